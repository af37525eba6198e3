"""HTTP load generator for the stress tests (stdlib only).

Usage: stress_load.py PORT CONNECTIONS PATH

Each connection is a thread with its own keep-alive HTTP/1.1 connection,
sending GET PATH back to back and counting successes (200 with the expected
body) and failures (anything else: error, reset, timeout, other status).
The target's socket count therefore stays constant while it runs, so the
test can compare the target's descriptors.

Control on stdin, one word a line, each answered with one JSON line:
  pause   finish the requests in flight, send no more ("paused")
  resume  start again
  stats   the counters so far
The counters: ok, failed (with the first errors), reconnects, the slowest
request (ms) and the first requests slower than SLOW as [start, ms].
EOF on stdin stops it; it prints the final counters and exits.
"""
import http.client
import json
import sys
import threading
import time

EXPECTED = b"ok\n"
REQUEST_TIMEOUT = 10.0
SLOW = 0.2     # requests slower than this (s) are listed: [start, ms]


class Load:
    def __init__(self, port, connections, path):
        self.port = port
        self.path = path
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.reconnects = 0
        self.errors = []
        self.max_latency = 0.0
        self.slow = []
        self.running = threading.Event()
        self.running.set()
        self.stopping = False
        self.idle = threading.Semaphore(0)
        self.threads = [threading.Thread(target=self.worker, daemon=True)
                        for _ in range(connections)]

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=REQUEST_TIMEOUT)

    def fail(self, why):
        with self.lock:
            self.failed += 1
            if len(self.errors) < 10:
                self.errors.append(why)

    def worker(self):
        conn = self.connect()
        while not self.stopping:
            if not self.running.is_set():
                self.idle.release()
                self.running.wait()
                continue
            start = time.monotonic()
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.fail(f"{type(e).__name__}: {e}")
                conn.close()
                conn = self.connect()
                with self.lock:
                    self.reconnects += 1
                continue
            took = time.monotonic() - start
            if resp.status != 200 or body != EXPECTED:
                self.fail(f"status {resp.status} body {body[:60]!r}")
                continue
            with self.lock:
                self.ok += 1
                self.max_latency = max(self.max_latency, took)
                if took >= SLOW and len(self.slow) < 10:
                    self.slow.append([round(time.time() - took, 3),
                                      round(took * 1e3, 1)])
        conn.close()

    def stats(self, state):
        with self.lock:
            return {"state": state, "ok": self.ok, "failed": self.failed,
                    "reconnects": self.reconnects,
                    "max_latency_ms": round(self.max_latency * 1e3, 1),
                    "errors": list(self.errors), "slow": list(self.slow)}

    def pause(self):
        self.running.clear()
        for _ in self.threads:
            self.idle.acquire()


def main():
    port, connections, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    load = Load(port, connections, path)
    for t in load.threads:
        t.start()
    print(json.dumps(load.stats("started")), flush=True)
    for line in sys.stdin:
        word = line.strip()
        if word == "pause":
            load.pause()
            print(json.dumps(load.stats("paused")), flush=True)
        elif word == "resume":
            load.running.set()
            print(json.dumps(load.stats("running")), flush=True)
        else:
            print(json.dumps(load.stats("running")), flush=True)
    load.stopping = True
    load.running.set()
    for t in load.threads:
        t.join(REQUEST_TIMEOUT + 1)
    print(json.dumps(load.stats("stopped")), flush=True)


if __name__ == "__main__":
    main()
