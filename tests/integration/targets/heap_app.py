"""Target for the heap test: a thread calls price() every 10 ms; stdin
commands, one per line:
  heap -> JSON {"pymalloc_bytes": bytes in pymalloc's allocated blocks}
EOF on stdin exits."""
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


threading.Thread(target=worker, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "heap":
        print(json.dumps({"pymalloc_bytes": pymalloc_bytes()}), flush=True)
