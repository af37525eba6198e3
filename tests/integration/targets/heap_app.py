"""Target for the heap test: a thread calls price() every 10 ms; stdin
commands, one per line:
  heap -> JSON {"pymalloc_bytes": bytes in pymalloc's allocated blocks,
                "main_arena_bytes": bytes glibc's main malloc arena spans,
                "arenas_bytes": bytes all of glibc's malloc arenas span}
EOF on stdin exits."""
import ctypes
import json
import os
import re
import sys
import tempfile
import threading
import time


def price(order_id, qty):
    return order_id * qty


def worker():
    n = 0
    while True:
        price(n, 2)
        n += 1
        time.sleep(0.01)


def pymalloc_bytes():
    """From sys._debugmallocstats(), which writes to the C stderr."""
    with tempfile.TemporaryFile(mode="w+") as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    return int(re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
               .group(1).replace(",", ""))


def arena_bytes():
    """From malloc_info(): the bytes each of glibc's malloc arenas spans; the
    first is the main arena, the one the main thread (this one, and the one
    pydi injects into) allocates from."""
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(mode="r") as out:
        fp = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        text = out.read()
    return [int(size) for size in re.findall(
        r'<heap nr="\d+">.*?<system type="current" size="(\d+)"/>', text, re.S)]


threading.Thread(target=worker, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "heap":
        arenas = arena_bytes()
        print(json.dumps({"pymalloc_bytes": pymalloc_bytes(), "main_arena_bytes": arenas[0],
                          "arenas_bytes": sum(arenas)}), flush=True)
