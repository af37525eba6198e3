"""Target for the lease test: calls price() continuously from a thread (every
10 ms; back to back with the argument "flood") and answers commands on stdin,
one per line:
  state  -> JSON {"code_id": id(price.__code__), "original": bool,
                  "monitoring": {tool: events} (3.12+), "calls": n}
EOF on stdin exits."""
import json
import sys
import threading
import time

CALLS = 0
PAUSE_S = 0 if sys.argv[1:] == ["flood"] else 0.01


def price(order_id, qty):
    total = order_id * qty
    return total


ORIGINAL = price.__code__


def worker():
    global CALLS
    while True:
        price(CALLS, 2)
        CALLS += 1
        if PAUSE_S:
            time.sleep(PAUSE_S)


def state():
    monitoring = {}
    mon = getattr(sys, "monitoring", None)
    if mon is not None:
        for tool in range(6):
            if mon.get_tool(tool) is not None:
                monitoring[str(tool)] = [mon.get_tool(tool),
                                         mon.get_events(tool),
                                         mon.get_local_events(tool, ORIGINAL)]
    return {"code_id": id(price.__code__), "original": price.__code__ is ORIGINAL,
            "monitoring": monitoring, "calls": CALLS}


threading.Thread(target=worker, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "state":
        print(json.dumps(state()), flush=True)
