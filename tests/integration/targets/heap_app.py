"""Target for the heap test: a thread calls price() every 10 ms; stdin
commands, one per line:
  heap -> JSON {"pymalloc_bytes": bytes in pymalloc's allocated blocks,
                "main_arena_bytes": bytes glibc's main malloc arena spans,
                "arenas_bytes": bytes all of glibc's malloc arenas span,
                "main_arena_free_bytes": free bytes in the main arena's bins}
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


def malloc_info():
    """glibc's malloc_info() XML: a <heap> per arena, the main one first (the
    one the main thread, this one and the one pydi injects into, allocates
    from)."""
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(mode="r") as out:
        fp = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        return out.read()


def arena_bytes(text):
    """The bytes each arena spans."""
    return [int(size) for size in re.findall(
        r'<heap nr="\d+">.*?<system type="current" size="(\d+)"/>', text, re.S)]


def main_arena_free_bytes(text):
    """Free chunks in the main arena's bins (fast and the rest; the top of
    the heap not included): holes that large blocks are then cut from."""
    main = re.search(r'<heap nr="0">(.*?)</heap>', text, re.S).group(1)
    return sum(int(size) for size in re.findall(
        r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"/>', main))


threading.Thread(target=worker, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "heap":
        info = malloc_info()
        arenas = arena_bytes(info)
        print(json.dumps({"pymalloc_bytes": pymalloc_bytes(), "main_arena_bytes": arenas[0],
                          "arenas_bytes": sum(arenas),
                          "main_arena_free_bytes": main_arena_free_bytes(info)}), flush=True)
