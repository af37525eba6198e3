# SPDX-License-Identifier: MIT
"""Check pydi's CPython struct offsets against the interpreter running this.

Run it with the target interpreter itself, standard library only:

    python3.X offsets_probe.py '{"code_filename": 112, ...}'
    python3.X offsets_probe.py < offsets.json
    python3.X - '<json>' < offsets_probe.py     # script on stdin (chroots)

The JSON object holds the fields of struct py_offsets (agent/py_offsets.h);
null, or 2**64-1, means PY_OFF_NONE. code_lines_merged may be left out;
unknown keys are ignored.

The probe reads its own memory at id(obj) + offset and compares what it
finds with what Python reports about the same object: code objects, tuples,
lists, bytes, str, float, int, dict, types, and the runtime, interpreter,
thread and frame structures reached from _PyRuntime and the C API. Memory is
read with process_vm_readv on this very process, so a wrong offset yields a
failed check, not a crash.

It prints one JSON object:
    {"python": "3.12.1", "ok": true,
     "checks": [{"check": "...", "fields": [...], "ok": true,
                 "detail": "..."}],
     "not_verified": [{"field": "...", "why": "..."}]}
Exit status: 0 all checks passed, 1 some failed, 2 bad input.
"""
import ctypes
import functools
import json
import os
import sys
import threading
import time

NONE = 2**64 - 1

FIELDS = (
    "runtime_interpreters_head", "runtime_finalizing",
    "runtime_gilstate_tstate_current",
    "interp_id", "interp_next", "interp_threads_head", "interp_modules",
    "interp_ceval_gil", "gil_locked", "gil_last_holder",
    "tstate_next", "tstate_interp", "tstate_cframe", "cframe_current_frame",
    "tstate_current_frame", "tstate_thread_id", "tstate_native_thread_id",
    "frame_previous", "frame_code", "frame_instr_ptr", "frame_localsplus",
    "frame_owner", "frame_code_is_stackref",
    "object_type", "varobject_size",
    "type_name", "type_flags", "type_basicsize", "type_dictoffset",
    "code_filename", "code_name", "code_qualname", "code_linetable",
    "code_firstlineno", "code_argcount", "code_posonlyargcount",
    "code_kwonlyargcount", "code_flags", "code_nlocalsplus",
    "code_localsplusnames", "code_localspluskinds", "code_consts",
    "code_code_adaptive",
    "tuple_size", "tuple_item", "list_size", "list_item",
    "bytes_size", "bytes_sval",
    "unicode_length", "unicode_state", "unicode_ascii_size",
    "unicode_compact_size",
    "float_value", "long_tag", "long_digit", "long_is_tagged",
    "dict_used", "dict_keys", "dict_values",
)
OPTIONAL_FIELDS = ("code_lines_merged",)
BOOL_FIELDS = ("frame_code_is_stackref", "long_is_tagged",
               "code_lines_merged")

# _PyInterpreterFrame.owner values, the same in 3.11 to 3.14.
OWNED_BY_THREAD = 0
OWNED_BY_GENERATOR = 1
OWNED_BY_CSTACK = 3          # 3.12+: entry/shim frames, no Python code
# co_localspluskinds bits, the same in 3.11 to 3.14.
CO_FAST_LOCAL, CO_FAST_CELL, CO_FAST_FREE = 0x20, 0x40, 0x80
# _Py_DebugOffsets-era stack references keep flags in the low bits.
STACKREF_TAG_MASK = 0x7
MAX_FRAMES = 256
MAX_THREADS = 64


class BadRead(Exception):
    pass


class Memory:
    """Reads this process's memory without risking a segfault.

    PyDLL keeps the GIL across the call, so what we read is what a thread
    holding the GIL sees (the GIL state itself included).
    """

    class _IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    def __init__(self):
        libc = ctypes.PyDLL(None, use_errno=True)
        self._readv = libc.process_vm_readv
        self._readv.restype = ctypes.c_ssize_t
        self._readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong,
                                ctypes.c_void_p, ctypes.c_ulong,
                                ctypes.c_ulong]
        self._pid = os.getpid()

    def read(self, addr, size):
        if not addr or addr < 0 or addr + size > 2**64:
            raise BadRead("address %#x" % (addr or 0))
        buf = ctypes.create_string_buffer(size)
        local = self._IoVec(ctypes.addressof(buf), size)
        remote = self._IoVec(addr, size)
        got = self._readv(self._pid, ctypes.byref(local), 1,
                          ctypes.byref(remote), 1, 0)
        if got != size:
            raise BadRead("%d bytes at %#x: %s" % (
                size, addr, os.strerror(ctypes.get_errno())))
        return buf.raw

    def unsigned(self, addr, size=8):
        return int.from_bytes(self.read(addr, size), "little")

    def signed(self, addr, size=8):
        return int.from_bytes(self.read(addr, size), "little", signed=True)

    def double(self, addr):
        return ctypes.c_double.from_buffer_copy(self.read(addr, 8)).value

    def cstring(self, addr, limit=256):
        out = b""
        while len(out) < limit:
            chunk = self.read(addr + len(out), 1)
            if chunk == b"\0":
                return out.decode("utf-8", "replace")
            out += chunk
        return out.decode("utf-8", "replace")


class Probe:
    def __init__(self, offsets):
        self.off = offsets
        self.mem = Memory()
        self.checks = []
        self.not_verified = {}
        self.api = ctypes.pythonapi
        for name, restype, argtypes in (
            ("PyThreadState_Get", ctypes.c_void_p, []),
            ("PyInterpreterState_Get", ctypes.c_void_p, []),
            ("PyInterpreterState_Head", ctypes.c_void_p, []),
            ("PyInterpreterState_Next", ctypes.c_void_p, [ctypes.c_void_p]),
            ("PyInterpreterState_GetID", ctypes.c_int64, [ctypes.c_void_p]),
            ("PyInterpreterState_ThreadHead", ctypes.c_void_p,
             [ctypes.c_void_p]),
            ("PyThreadState_Next", ctypes.c_void_p, [ctypes.c_void_p]),
        ):
            fn = getattr(self.api, name)
            fn.restype, fn.argtypes = restype, argtypes

    # -- bookkeeping ------------------------------------------------------

    def has(self, *fields):
        return all(self.off[f] is not None for f in fields)

    def check(self, name, fields, fn):
        """Run fn() -> (ok, detail); a bad read counts as a failure."""
        if not self.has(*fields):
            return None
        try:
            ok, detail = fn()
        except BadRead as e:
            ok, detail = False, "unreadable: %s" % e
        except Exception as e:  # noqa: BLE001 - report, never crash
            ok, detail = False, "%s: %s" % (type(e).__name__, e)
        self.checks.append({"check": name, "fields": list(fields),
                            "ok": bool(ok), "detail": str(detail)})
        return ok

    def weak(self, field, why):
        self.not_verified[field] = why

    # -- small readers named after what they read -------------------------

    def ptr_at(self, base, field):
        return self.mem.unsigned(base + self.off[field])

    def int_at(self, base, field):
        return self.mem.signed(base + self.off[field], 4)

    def ssize_at(self, base, field):
        return self.mem.signed(base + self.off[field])

    def object_at(self, addr, expected_type):
        """The object at addr, once its ob_type says it is expected_type."""
        if self.mem.unsigned(addr + self.off["object_type"]) != id(
                expected_type):
            raise BadRead("%#x is not a %s" % (addr, expected_type.__name__))
        return ctypes.cast(ctypes.c_void_p(addr), ctypes.py_object).value

    def untag(self, ref):
        if self.off["frame_code_is_stackref"]:
            return ref & ~STACKREF_TAG_MASK
        return ref

    # -- objects ----------------------------------------------------------

    def check_objects(self):
        samples = (1.5, "abc", (1,), [], {}, b"", int, self.check_objects)
        self.check("ob_type of float/str/tuple/list/dict/bytes/type/method",
                   ["object_type"], lambda: (
                       [self.ptr_at(id(o), "object_type") for o in samples]
                       == [id(type(o)) for o in samples], "ids compared"))
        t, b = (10, 20, 30), bytes(range(7))
        self.check("ob_size of a tuple and a bytes", ["varobject_size"],
                   lambda: self._expect(
                       (self.ssize_at(id(t), "varobject_size"),
                        self.ssize_at(id(b), "varobject_size")), (3, 7)))

    def check_types(self):
        class HeapType:
            pass

        def fn():
            pass

        types_ = (int, dict, type, type(fn), HeapType)
        self.check("tp_name of int, dict, type, function, a class",
                   ["type_name"], lambda: self._expect(
                       [self.mem.cstring(self.ptr_at(id(T), "type_name"))
                        for T in types_],
                       [T.__name__ for T in types_]))
        self.check("tp_flags == __flags__", ["type_flags"],
                   lambda: self._expect(
                       [self.mem.unsigned(id(T) + self.off["type_flags"])
                        for T in types_], [T.__flags__ for T in types_]))
        self.check("tp_basicsize == __basicsize__", ["type_basicsize"],
                   lambda: self._expect(
                       [self.ssize_at(id(T), "type_basicsize")
                        for T in types_], [T.__basicsize__ for T in types_]))
        self.check("tp_dictoffset == __dictoffset__", ["type_dictoffset"],
                   lambda: self._expect(
                       [self.ssize_at(id(T), "type_dictoffset")
                        for T in types_], [T.__dictoffset__ for T in types_]))

    def check_code(self):
        def sample(a, b, /, c, *args, d, e=5, **kw):
            kept = a

            def inner():
                return kept + c
            return inner

        def never_called():
            pass

        def one_busy_line(s):
            return (len(s) + s.count("a")) * len(s[0:3]) - s.find("b")

        inner = sample(1, 2, 3, d=4)
        co, ico = sample.__code__, inner.__code__
        addr = id(co)
        for field, attr in (("code_filename", "co_filename"),
                            ("code_name", "co_name"),
                            ("code_qualname", "co_qualname"),
                            ("code_linetable", "co_linetable"),
                            ("code_consts", "co_consts")):
            self.check("%s -> the %s object" % (field, attr), [field],
                       lambda f=field, a=attr: self._expect(
                           self.ptr_at(addr, f), id(getattr(co, a))))
        for field, attr in (("code_firstlineno", "co_firstlineno"),
                            ("code_argcount", "co_argcount"),
                            ("code_posonlyargcount", "co_posonlyargcount"),
                            ("code_kwonlyargcount", "co_kwonlyargcount"),
                            ("code_flags", "co_flags")):
            self.check("%s == %s" % (field, attr), [field],
                       lambda f=field, a=attr: self._expect(
                           self.int_at(addr, f), getattr(co, a)))
        for code in (co, ico):
            self.check("localsplus names/kinds/count of %s" % code.co_name,
                       ["code_localsplusnames", "code_localspluskinds",
                        "code_nlocalsplus"],
                       lambda c=code: self._check_localsplus(c))
        self.check("co_code_adaptive of a never-run function == co_code",
                   ["code_code_adaptive"], lambda: self._expect(
                       self.mem.read(id(never_called.__code__)
                                     + self.off["code_code_adaptive"],
                                     len(never_called.__code__.co_code)),
                       never_called.__code__.co_code))
        self.check("co_lines() merges same-line entries iff "
                   "code_lines_merged", ["code_lines_merged"],
                   lambda: self._expect(
                       self._lines_merged(one_busy_line.__code__),
                       self.off["code_lines_merged"]))

    @staticmethod
    def _lines_merged(co):
        lines = [line for _, _, line in co.co_lines()]
        return all(a != b for a, b in zip(lines, lines[1:]))

    def _check_localsplus(self, co):
        names = self.object_at(self.ptr_at(id(co), "code_localsplusnames"),
                               tuple)
        kinds = self.object_at(self.ptr_at(id(co), "code_localspluskinds"),
                               bytes)
        count = self.int_at(id(co), "code_nlocalsplus")
        cells = [n for n in co.co_cellvars if n not in co.co_varnames]
        expected = list(co.co_varnames) + cells + list(co.co_freevars)
        if sorted(names) != sorted(expected) or count != len(names) or \
                len(kinds) != count:
            return False, "names %r kinds %r count %d; want %r" % (
                names, kinds, count, expected)
        if [n for n in names if n in co.co_varnames] != list(co.co_varnames):
            return False, "local order %r vs co_varnames %r" % (
                names, co.co_varnames)
        for name, kind in zip(names, kinds):
            want = (CO_FAST_FREE if name in co.co_freevars else
                    CO_FAST_CELL if name in co.co_cellvars else
                    CO_FAST_LOCAL)
            if not kind & want:
                return False, "kind of %s is %#x, lacks %#x" % (
                    name, kind, want)
        return True, "%d names %r" % (count, names)

    def check_sequences(self):
        items = (object(), "x", 3.25)
        t, lst = tuple(items), list(items)
        self.check("tuple ob_size and ob_item[]", ["tuple_size", "tuple_item"],
                   lambda: self._expect(
                       (self.ssize_at(id(t), "tuple_size"),
                        [self.mem.unsigned(id(t) + self.off["tuple_item"]
                                           + 8 * i) for i in range(3)]),
                       (3, [id(o) for o in items])))

        def list_items():
            array = self.ptr_at(id(lst), "list_item")
            return [self.mem.unsigned(array + 8 * i) for i in range(3)]
        self.check("list ob_size and *ob_item", ["list_size", "list_item"],
                   lambda: self._expect(
                       (self.ssize_at(id(lst), "list_size"), list_items()),
                       (3, [id(o) for o in items])))
        data = bytes(b"pydi\x00probe")
        self.check("bytes ob_size and ob_sval", ["bytes_size", "bytes_sval"],
                   lambda: self._expect(
                       (self.ssize_at(id(data), "bytes_size"),
                        self.mem.read(id(data) + self.off["bytes_sval"],
                                      len(data) + 1)),
                       (len(data), data + b"\0")))

    def check_unicode(self):
        # Built at run time so no UTF-8 copy is cached beside the data.
        cases = (("ascii", "".join(["py", "di"]), 1, True, "latin-1"),
                 ("latin-1", "".join(["h", chr(0xe9)]), 1, False, "latin-1"),
                 ("ucs2", "".join(["h", chr(0x20ac)]), 2, False, "utf-16-le"),
                 ("ucs4", "".join(["h", chr(0x1f600)]), 4, False,
                  "utf-32-le"))
        for label, s, kind, ascii_, codec in cases:
            self.check("str (%s) length, state bits, inline data" % label,
                       ["unicode_length", "unicode_state",
                        "unicode_ascii_size", "unicode_compact_size"],
                       lambda s=s, k=kind, a=ascii_, c=codec:
                       self._check_str(s, k, a, c))
        self.check("sizeof(PyASCIIObject), sizeof(PyCompactUnicodeObject) "
                   "from sys.getsizeof",
                   ["unicode_ascii_size", "unicode_compact_size"],
                   lambda: self._expect(
                       (self.off["unicode_ascii_size"] + 1,
                        self.off["unicode_compact_size"] + 3),
                       (sys.getsizeof("".join([])),
                        sys.getsizeof("".join([chr(0xe9), "x"])))))

    def _check_str(self, s, kind, ascii_, codec):
        state = self.mem.unsigned(id(s) + self.off["unicode_state"], 4)
        # interned:2, kind:3, compact:1, ascii:1 (3.11 to 3.14)
        got_bits = ((state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1)
        header = self.off["unicode_ascii_size" if ascii_
                          else "unicode_compact_size"]
        encoded = s.encode(codec) + b"\0" * kind
        got = (self.ssize_at(id(s), "unicode_length"), got_bits,
               self.mem.read(id(s) + header, len(encoded)))
        return self._expect(got, (len(s), (kind, 1, int(ascii_)), encoded))

    def check_numbers(self):
        values = (1.5, -2.0e-300, 1e300)
        self.check("float ob_fval", ["float_value"], lambda: self._expect(
            [self.mem.double(id(v) + self.off["float_value"])
             for v in values], list(values)))
        ints = [int(s) for s in ("0", "1", "-1", "1073741823", "1073741824",
                                 "-12345678901234567890", str(2**200 + 7))]
        self.check("int sign, digit count and digits",
                   ["long_tag", "long_digit", "long_is_tagged"],
                   lambda: self._expect(
                       [self._decode_int(id(v)) for v in ints], ints))

    def _decode_int(self, addr):
        tag = self.ssize_at(addr, "long_tag")
        if self.off["long_is_tagged"]:
            ndigits, sign = tag >> 3, 1 - (tag & 3)
        else:
            ndigits, sign = abs(tag), (tag > 0) - (tag < 0)
        if ndigits > 64:
            raise BadRead("implausible digit count %d" % ndigits)
        bits = sys.int_info.bits_per_digit
        width = sys.int_info.sizeof_digit
        value = 0
        for i in reversed(range(ndigits)):
            value = (value << bits) | self.mem.unsigned(
                addr + self.off["long_digit"] + width * i, width)
        return sign * value

    def check_dicts(self):
        combined = {"a": 1, "b": 2, "c": 3}
        self.check("dict ma_used, combined table has no ma_values",
                   ["dict_used", "dict_values"], lambda: self._expect(
                       (self.ssize_at(id(combined), "dict_used"),
                        self.ptr_at(id(combined), "dict_values")), (3, 0)))
        # dk_nentries sits at +24 in PyDictKeysObject from 3.11 to 3.14.
        self.check("dict ma_keys -> keys object with dk_nentries == 3",
                   ["dict_keys"], lambda: self._expect(
                       self.mem.signed(self.ptr_at(id(combined), "dict_keys")
                                       + 24), 3))

        class Split:
            def __init__(self, x):
                self.x, self.y = x, x

        d1, d2 = Split(1).__dict__, Split(2).__dict__
        self.check("instance dicts share ma_keys and have ma_values",
                   ["dict_keys", "dict_values"], lambda: self._expect(
                       (self.ptr_at(id(d1), "dict_keys")
                        == self.ptr_at(id(d2), "dict_keys"),
                        self.ptr_at(id(d1), "dict_values") != 0,
                        self.ptr_at(id(d2), "dict_values") != 0),
                       (True, True, True)))

    # -- runtime, interpreters, threads -----------------------------------

    def check_runtime(self, runtime):
        api = self.api
        self.check("_PyRuntime.interpreters.head == PyInterpreterState_Head()",
                   ["runtime_interpreters_head"], lambda: self._expect(
                       self.ptr_at(runtime, "runtime_interpreters_head"),
                       api.PyInterpreterState_Head()))
        self.check("_PyRuntime._finalizing is NULL while running",
                   ["runtime_finalizing"], lambda: self._expect(
                       self.ptr_at(runtime, "runtime_finalizing"), 0))
        self.weak("runtime_finalizing", "only seen NULL (not finalizing)")
        self.check("_PyRuntime.gilstate.tstate_current == this thread",
                   ["runtime_gilstate_tstate_current"], lambda: self._expect(
                       self.ptr_at(runtime, "runtime_gilstate_tstate_current"),
                       api.PyThreadState_Get()))

    def check_interpreters(self, runtime):
        api = self.api
        interp = api.PyInterpreterState_Get()
        self.check("interp->id == PyInterpreterState_GetID()", ["interp_id"],
                   lambda: self._expect(self.ssize_at(interp, "interp_id"),
                                        api.PyInterpreterState_GetID(interp)))
        self.check("interp->modules is sys.modules", ["interp_modules"],
                   lambda: self._expect(self.ptr_at(interp, "interp_modules"),
                                        id(sys.modules)))
        self.check("interp->threads.head == PyInterpreterState_ThreadHead()",
                   ["interp_threads_head"], lambda: self._expect(
                       self.ptr_at(interp, "interp_threads_head"),
                       api.PyInterpreterState_ThreadHead(interp)))
        self.check("GIL locked, last holder is this thread",
                   ["interp_ceval_gil", "gil_locked", "gil_last_holder"],
                   lambda: self._check_gil(interp))
        sub = self._make_subinterpreter()
        try:
            self.check("interpreter list (%d) via interp->next and ids"
                       % self._count_interpreters(),
                       ["runtime_interpreters_head", "interp_next",
                        "interp_id"], lambda: self._check_interp_list(runtime))
        finally:
            self._destroy_subinterpreter(sub)
        if sub is None:
            self.weak("interp_next", "no subinterpreter module; only the "
                      "NULL next of the sole interpreter was seen")

    def _check_gil(self, interp):
        gil = self.ptr_at(interp, "interp_ceval_gil")
        got = (self.mem.signed(gil + self.off["gil_locked"], 4),
               self.mem.unsigned(gil + self.off["gil_last_holder"]))
        return self._expect(got, (1, self.api.PyThreadState_Get()))

    def _count_interpreters(self):
        n, interp = 0, self.api.PyInterpreterState_Head()
        while interp and n < MAX_THREADS:
            n, interp = n + 1, self.api.PyInterpreterState_Next(interp)
        return n

    def _check_interp_list(self, runtime):
        want, interp = [], self.api.PyInterpreterState_Head()
        while interp and len(want) < MAX_THREADS:
            want.append((interp, self.api.PyInterpreterState_GetID(interp)))
            interp = self.api.PyInterpreterState_Next(interp)
        got, interp = [], self.ptr_at(runtime, "runtime_interpreters_head")
        while interp and len(got) < MAX_THREADS:
            got.append((interp, self.ssize_at(interp, "interp_id")))
            interp = self.ptr_at(interp, "interp_next")
        return self._expect(got, want)

    @staticmethod
    def _make_subinterpreter():
        for name in ("_interpreters", "_xxsubinterpreters"):
            try:
                module = __import__(name)
                return module, module.create()
            except Exception:  # noqa: BLE001 - optional ground truth
                continue
        return None

    @staticmethod
    def _destroy_subinterpreter(sub):
        if sub is not None:
            module, handle = sub
            module.destroy(handle)

    def _thread_list(self, interp):
        got, tstate = [], self.ptr_at(interp, "interp_threads_head")
        while tstate and len(got) < MAX_THREADS:
            got.append(tstate)
            tstate = self.ptr_at(tstate, "tstate_next")
        return got

    def check_threads(self, idle_threads):
        api = self.api
        interp = api.PyInterpreterState_Get()
        me = api.PyThreadState_Get()

        def api_thread_list():
            want, tstate = [], api.PyInterpreterState_ThreadHead(interp)
            while tstate and len(want) < MAX_THREADS:
                want.append(tstate)
                tstate = api.PyThreadState_Next(tstate)
            return want
        self.check("thread list via tstate->next (%d threads)"
                   % len(api_thread_list()),
                   ["interp_threads_head", "tstate_next"],
                   lambda: self._expect(self._thread_list(interp),
                                        api_thread_list()))
        self.check("tstate->interp", ["tstate_interp"], lambda: self._expect(
            self.ptr_at(me, "tstate_interp"), interp))
        threads = list(idle_threads) + [threading.current_thread()]
        self.check("tstate->thread_id of every thread",
                   ["interp_threads_head", "tstate_next", "tstate_thread_id"],
                   lambda: self._expect(
                       sorted(self.ptr_at(t, "tstate_thread_id")
                              for t in self._thread_list(interp)),
                       sorted(t.ident for t in threads)))
        self.check("tstate->native_thread_id of every thread",
                   ["interp_threads_head", "tstate_next",
                    "tstate_native_thread_id"],
                   lambda: self._expect(
                       sorted(self.ssize_at(t, "tstate_native_thread_id")
                              for t in self._thread_list(interp)),
                       sorted(t.native_id for t in threads)))

    # -- frames -----------------------------------------------------------

    def current_frame_slot(self, tstate):
        """Address of the word that holds tstate's innermost frame."""
        if self.has("tstate_current_frame"):
            return tstate + self.off["tstate_current_frame"]
        cframe = self.ptr_at(tstate, "tstate_cframe")
        return cframe + self.off["cframe_current_frame"]

    def frame_chain(self, frame):
        """[(frame, code, owner, instr_ptr)] from frame outwards."""
        chain = []
        while frame and len(chain) < MAX_FRAMES:
            code = self.untag(self.ptr_at(frame, "frame_code"))
            owner = self.mem.unsigned(frame + self.off["frame_owner"], 1)
            instr = self.ptr_at(frame, "frame_instr_ptr")
            chain.append((frame, code, owner, instr))
            frame = self.ptr_at(frame, "frame_previous")
        return chain

    def python_frames(self, chain):
        return [link for link in chain if link[2] < OWNED_BY_CSTACK]

    def line_of(self, code, instr):
        offset = instr - (id(code) + self.off["code_code_adaptive"])
        for start, end, line in code.co_lines():
            if start <= offset < end:
                return line
        return "offset %d outside the code" % offset

    def compare_chain(self, top, pyframe, skip_lines_of_first):
        """Match the chain from frame top against Python's frames."""
        links = self.python_frames(self.frame_chain(top))
        truth = []
        while pyframe is not None:
            truth.append(pyframe)
            pyframe = pyframe.f_back
        if [code for _, code, _, _ in links] != [id(f.f_code) for f in truth]:
            return False, "codes %s vs %s" % (
                [hex(c) for _, c, _, _ in links],
                [f.f_code.co_name for f in truth])
        start = 1 if skip_lines_of_first else 0
        got = [self.line_of(f.f_code, instr)
               for (_, _, _, instr), f in zip(links[start:], truth[start:])]
        want = [f.f_lineno for f in truth[start:]]
        if got != want:
            return False, "lines %r vs f_lineno %r" % (got, want)
        owners = sorted({owner for _, _, owner, _ in links})
        if owners != [OWNED_BY_THREAD]:
            return False, "owners %r, want only %d" % (owners,
                                                       OWNED_BY_THREAD)
        return True, "%d frames: %s" % (
            len(truth), " <- ".join(f.f_code.co_name for f in truth))

    def frame_slot_fields(self):
        if self.has("tstate_current_frame"):
            return ["tstate_current_frame"]
        return ["tstate_cframe", "cframe_current_frame"]

    def check_own_frames(self):
        # No lambdas here: a closure would turn `marker` into a cell.
        slot_fields = self.frame_slot_fields()
        frame_fields = ["frame_previous", "frame_code", "frame_instr_ptr",
                        "frame_owner", "frame_code_is_stackref"]
        me = self.api.PyThreadState_Get()
        try:
            slot = self.current_frame_slot(me)
            self.mem.read(slot, 8)
        except BadRead as e:
            self.check("this thread's frame pointer", slot_fields,
                       functools.partial(self._failed, "unreadable: %s" % e))
            return
        marker = object()
        nothing = None      # 3.14 tags a stack reference to an immortal
        # Read inline, so the innermost frame is this very function's.
        top = ctypes.c_uint64.from_address(slot).value
        here = sys._getframe()
        self.check("frame chain of this thread == sys._getframe() chain",
                   slot_fields + frame_fields,
                   functools.partial(self.compare_chain, top, here, True))
        for name, value in (("marker", marker), ("nothing", nothing)):
            self.check("localsplus slot of local %r holds that object" % name,
                       slot_fields + ["frame_localsplus",
                                      "code_localsplusnames",
                                      "frame_code_is_stackref"],
                       functools.partial(self._check_local, top, here.f_code,
                                         name, value))
        self.check("a running generator's frame is owned by the generator",
                   slot_fields + ["frame_owner", "frame_code"],
                   functools.partial(self._check_generator_frame, me))

    @staticmethod
    def _failed(detail):
        return False, detail

    def _check_local(self, frame, code, name, value):
        names = self.object_at(self.ptr_at(id(code), "code_localsplusnames"),
                               tuple)
        slot = frame + self.off["frame_localsplus"] + 8 * names.index(name)
        return self._expect(self.untag(self.mem.unsigned(slot)), id(value))

    def _check_generator_frame(self, tstate):
        def gen():
            # 3.11/3.12 resume a generator under its own _PyCFrame, so
            # look the slot up from inside.
            slot = self.current_frame_slot(tstate)
            self.mem.read(slot, 8)      # fail as BadRead, not as SIGSEGV
            yield ctypes.c_uint64.from_address(slot).value, sys._getframe()
        suspended = gen()   # kept alive: a freed generator clears its frame
        frame, pyframe = next(suspended)
        code = self.untag(self.ptr_at(frame, "frame_code"))
        owner = self.mem.unsigned(frame + self.off["frame_owner"], 1)
        suspended.close()
        return self._expect((code, owner),
                            (id(pyframe.f_code), OWNED_BY_GENERATOR))

    def check_other_frames(self, idle_threads):
        interp = self.api.PyInterpreterState_Get()
        fields = self.frame_slot_fields() + [
            "tstate_thread_id", "frame_previous", "frame_code",
            "frame_instr_ptr", "frame_owner", "frame_code_is_stackref"]
        idents = {t.ident for t in idle_threads}

        def compare_all():
            current = sys._current_frames()
            seen = 0
            for tstate in self._thread_list(interp):
                ident = self.ptr_at(tstate, "tstate_thread_id")
                if ident not in idents:
                    continue
                top = self.mem.unsigned(self.current_frame_slot(tstate))
                ok, detail = self.compare_chain(top, current[ident], False)
                if not ok:
                    return False, "thread %d: %s" % (ident, detail)
                seen += 1
            return self._expect(seen, len(idents))
        self.check("frame chains of %d idle threads == sys._current_frames()"
                   % len(idents), fields, compare_all)

    # -- driver -----------------------------------------------------------

    @staticmethod
    def _expect(got, want):
        return got == want, "got %r, want %r" % (got, want)

    def run(self):
        runtime = ctypes.addressof(
            ctypes.c_char.in_dll(self.api, "_PyRuntime"))
        idle, stop = start_idle_threads(3)
        try:
            self.check_objects()
            self.check_types()
            self.check_code()
            self.check_sequences()
            self.check_unicode()
            self.check_numbers()
            self.check_dicts()
            self.check_runtime(runtime)
            self.check_interpreters(runtime)
            self.check_threads(idle)
            self.check_own_frames()
            self.check_other_frames(idle)
        finally:
            stop()
        return self.report()

    def report(self):
        covered = {f for c in self.checks if c["ok"] for f in c["fields"]}
        not_verified = dict(self.not_verified)
        for field in FIELDS + OPTIONAL_FIELDS:
            if self.off[field] is None:
                not_verified.setdefault(field, "absent from the input"
                                        if field in OPTIONAL_FIELDS
                                        else "PY_OFF_NONE in the input")
            elif field not in covered:
                not_verified.setdefault(field, "no passing check reads it")
        return {
            "python": "%d.%d.%d%s" % (sys.version_info[:3] + (
                "" if sys.version_info.releaselevel == "final"
                else sys.version_info.releaselevel,)),
            "ok": all(c["ok"] for c in self.checks),
            "checks": self.checks,
            "not_verified": [{"field": f, "why": w}
                             for f, w in sorted(not_verified.items())],
        }


def idle_thread_body(gate):
    gate.acquire()      # parked here until the probe is done
    gate.release()


def start_idle_threads(count):
    """Threads parked on one line, so their frames hold still."""
    gate = threading.Lock()
    gate.acquire()
    threads = [threading.Thread(target=idle_thread_body, args=(gate,),
                                daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    parked_line = idle_thread_body.__code__.co_firstlineno + 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        frames = sys._current_frames()
        if all(t.ident in frames
               and frames[t.ident].f_code is idle_thread_body.__code__
               and frames[t.ident].f_lineno == parked_line for t in threads):
            break
        time.sleep(0.001)

    def finish():
        gate.release()
        for t in threads:
            t.join()
    return threads, finish


def load_offsets(argv):
    text = argv[1] if len(argv) > 1 and argv[1] != "-" else sys.stdin.read()
    raw = json.loads(text)
    missing = [f for f in FIELDS if f not in raw]
    if missing:
        raise ValueError("missing fields: %s" % ", ".join(missing))
    offsets = {}
    for field in FIELDS + OPTIONAL_FIELDS:
        value = raw.get(field)
        if field in OPTIONAL_FIELDS and value is None:
            pass
        elif field in BOOL_FIELDS:
            if not isinstance(value, bool):
                raise ValueError("%s: want true/false" % field)
        elif value == NONE:
            value = None
        elif value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError("%s: want an offset or null" % field)
        offsets[field] = value
    return offsets


def main(argv):
    try:
        offsets = load_offsets(argv)
    except ValueError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    report = Probe(offsets).run()
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
