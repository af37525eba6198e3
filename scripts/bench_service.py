"""The service of scripts/bench item 1: FastAPI under uvicorn, one worker.

    OTEL_SERVICE_NAME=NAME /usr/bin/python3 scripts/bench_service.py PORT

GET /items/{item_id}?q=... is the request path wrk drives; its handler
(read_item) is what the "handler" configurations probe. off_path() is never
called by a request: the "not on the request path" configuration probes it.
Prints "port N" once uvicorn accepts connections; no access log (a log line
per request would dominate what is measured). With BENCH_IDLE_THREAD=1 it
starts one thread that only sleeps, as the helper's control thread does.

SIGUSR2 starts the idle thread while it serves (a step of item 1's rounds
within one process). With BENCH_HELPER=PATH (the helper's .so), SIGUSR1 makes
the service load pydi's helper itself, from a memfd named as `pydi inject`
names it, and start it, as the injected bootstrap does: a step for runs where
pydi cannot ptrace the service (under valgrind, which runs the code on a
simulated CPU); and SIGHUP collects all of the garbage collector's
generations: requests here leave a few GC objects each, so a collection comes
every few thousand requests, and where it falls depends on how many objects a
step left; the counting run collects before each side of a step so that none
falls inside a count.
"""
import gc
import os
import signal
import sys
import threading
import time

import uvicorn
from fastapi import FastAPI

app = FastAPI()
PRICES = {i: 1.25 * i for i in range(100)}


def price(item_id):
    return PRICES.get(item_id % 100, 0.0)


def off_path(x, y, z):
    """Never called by a request."""
    return x + y + z


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str = ""):
    return {"item_id": item_id, "q": q, "price": price(item_id)}


class Server(uvicorn.Server):
    def startup_done(self):
        print(f"port {self.config.port}", flush=True)

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        self.startup_done()


def start_idle_thread():
    threading.Thread(target=time.sleep, args=(1e9,), daemon=True).start()


def load_helper(path):
    """What `pydi inject` makes the target run, minus the ptrace."""
    import importlib.machinery
    import importlib.util

    fd = os.memfd_create("pydi-helper", 0)
    try:
        with open(path, "rb") as so:
            os.write(fd, so.read())
        loader = importlib.machinery.ExtensionFileLoader("_pydi_helper",
                                                         f"/proc/self/fd/{fd}")
        spec = importlib.util.spec_from_loader("_pydi_helper", loader)
        helper = importlib.util.module_from_spec(spec)
        sys.modules["_pydi_helper"] = helper
        loader.exec_module(helper)
        helper._start(0)
    finally:
        os.close(fd)


def steps_on_signals(helper_path):
    signal.signal(signal.SIGUSR2, lambda *_: start_idle_thread())
    if helper_path:
        signal.signal(signal.SIGUSR1, lambda *_: load_helper(helper_path))
        signal.signal(signal.SIGHUP, lambda *_: gc.collect())


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    if os.environ.get("BENCH_IDLE_THREAD") == "1":
        start_idle_thread()
    steps_on_signals(os.environ.get("BENCH_HELPER"))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, workers=1,
                            access_log=False, log_level="warning", lifespan="off")
    Server(config).run()


if __name__ == "__main__":
    main()
