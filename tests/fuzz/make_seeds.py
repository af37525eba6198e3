# SPDX-License-Identifier: MIT
"""Seeds for fuzz_linetable and fuzz_pycode, from Debian's /usr/bin/python3 (3.11).

fuzz_pycode's seed lays one real code object (its names, locals, kinds and
line table) out as CPython 3.11 would in memory, at the offsets of
agent/py_offsets.c's table_311, in the input format fuzz_pycode.c reads.
"""
import os
import struct
import sys

corpus = sys.argv[1]


def sample(a, b=2, *args, key=None, **kw):
    total = a + b
    for x in args:
        total += x

    def inner():
        return total
    return inner() if key else total


codes = [sample.__code__, os.path.join.__code__, struct.__spec__.__class__.__init__.__code__]
for i, co in enumerate(codes):
    with open(f"{corpus}/linetable/co_{co.co_name}_{i}", "wb") as f:
        f.write(struct.pack("<i", co.co_firstlineno) + co.co_linetable)

# --- fuzz_pycode: 3.11 layout (table_311) ---------------------------------
OB_TYPE, TP_NAME = 8, 24
CO = dict(flags=48, argcount=56, posonly=60, kwonly=64, firstlineno=72,
          nlocalsplus=76, localsplusnames=96, localspluskinds=104,
          filename=112, name=120, qualname=128, linetable=136)
TUPLE_SIZE, TUPLE_ITEM = 16, 24
BYTES_SIZE, BYTES_SVAL = 16, 32
UNI_LENGTH, UNI_STATE, UNI_ASCII_SIZE = 16, 32, 48
BASE = 0x7f0000001000

mem = bytearray(256)            # the code object, at BASE


def place(blob):
    """Append blob (8-aligned); return its address."""
    mem.extend(b"\0" * (-len(mem) % 8))
    addr = BASE + len(mem)
    mem.extend(blob)
    return addr


def pystr(s):
    data = s.encode("ascii")
    hdr = bytearray(UNI_ASCII_SIZE)
    struct.pack_into("<Q", hdr, UNI_LENGTH, len(data))
    # kind 1, compact, ascii (see agent/pyobj.c)
    struct.pack_into("<I", hdr, UNI_STATE, (1 << 2) | (1 << 5) | (1 << 6))
    return place(bytes(hdr) + data + b"\0")


def pybytes(b):
    hdr = bytearray(BYTES_SVAL)
    struct.pack_into("<Q", hdr, BYTES_SIZE, len(b))
    return place(bytes(hdr) + b + b"\0")


def pytuple(items):
    hdr = bytearray(TUPLE_ITEM)
    struct.pack_into("<Q", hdr, TUPLE_SIZE, len(items))
    return place(bytes(hdr) + b"".join(struct.pack("<Q", x) for x in items))


co = sample.__code__
tp_name = place(b"code\0")
type_obj = bytearray(TP_NAME + 8)
struct.pack_into("<Q", type_obj, TP_NAME, tp_name)
type_addr = place(bytes(type_obj))
names = co.co_varnames + co.co_cellvars + co.co_freevars
kinds = bytes([0x20] * len(co.co_varnames) + [0x40] * len(co.co_cellvars)
              + [0x80] * len(co.co_freevars))
ptrs = dict(
    localsplusnames=pytuple([pystr(n) for n in names]),
    localspluskinds=pybytes(kinds),
    filename=pystr("/srv/app/sample.py"),
    name=pystr(co.co_name),
    qualname=pystr(co.co_qualname),
    linetable=pybytes(co.co_linetable),
)
struct.pack_into("<Q", mem, OB_TYPE, type_addr)
for field, value in [("flags", co.co_flags), ("argcount", co.co_argcount),
                     ("posonly", co.co_posonlyargcount),
                     ("kwonly", co.co_kwonlyargcount),
                     ("firstlineno", co.co_firstlineno),
                     ("nlocalsplus", len(names))]:
    struct.pack_into("<i", mem, CO[field], value)
for field, addr in ptrs.items():
    struct.pack_into("<Q", mem, CO[field], addr)

header = struct.pack("<B7xQ", 0, BASE)  # 3.11 table, mapped at BASE
with open(f"{corpus}/pycode/sample_311", "wb") as f:
    f.write(header + bytes(mem))
# The same bytes through the 3.12 table: other offsets, merged co_lines().
with open(f"{corpus}/pycode/sample_311_read_as_312", "wb") as f:
    f.write(struct.pack("<B7xQ", 1, BASE) + bytes(mem))

# --- fuzz_capture_wire: the snapshot seeds as ring-buffer events ----------
# fuzz_snapshot's input is a header, a whole struct pyprobe_capture (head,
# vars[64], frames[32], data), then memory; an event keeps only nvars vars,
# nframes frames and data_len bytes of objects (bpf/pyprobe.h).
HEAD, NVARS_MAX, NFRAMES_MAX = 88, 64, 32
CAPTURE = HEAD + NVARS_MAX * 8 + NFRAMES_MAX * 16 + 16384 + 2048
os.makedirs(f"{corpus}/capture_wire", exist_ok=True)
for name in sorted(os.listdir(f"{corpus}/snapshot")):
    with open(f"{corpus}/snapshot/{name}", "rb") as f:
        blob = f.read()
    header, cap, memory = blob[:16], blob[16:16 + CAPTURE], blob[16 + CAPTURE:]
    nvars, nframes, _, data_len = struct.unpack_from("<4I", cap, 64)
    nvars, nframes = min(nvars, NVARS_MAX), min(nframes, NFRAMES_MAX)
    data_len = min(data_len, 16384)
    frames_at = HEAD + NVARS_MAX * 8
    body = (cap[HEAD:HEAD + nvars * 8] + cap[frames_at:frames_at + nframes * 16]
            + cap[frames_at + NFRAMES_MAX * 16:][:data_len])
    head = bytearray(cap[:HEAD])
    struct.pack_into("<I", head, 76, len(body))
    event = bytes(head) + body
    with open(f"{corpus}/capture_wire/{name}", "wb") as f:
        f.write(header[:2] + struct.pack("<H", len(event)) + header[4:] + event + memory)
