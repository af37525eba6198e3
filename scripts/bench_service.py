"""The service of scripts/bench item 1: FastAPI under uvicorn, one worker.

    OTEL_SERVICE_NAME=NAME /usr/bin/python3 scripts/bench_service.py PORT

GET /items/{item_id}?q=... is the request path wrk drives; its handler
(read_item) is what the "handler" configurations probe. off_path() is never
called by a request: the "not on the request path" configuration probes it.
Prints "port N" once uvicorn accepts connections; no access log (a log line
per request would dominate what is measured). With BENCH_IDLE_THREAD=1 it
starts one thread that only sleeps, as the helper's control thread does.
"""
import os
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


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    if os.environ.get("BENCH_IDLE_THREAD") == "1":
        start_idle_thread()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, workers=1,
                            access_log=False, log_level="warning", lifespan="off")
    Server(config).run()


if __name__ == "__main__":
    main()
