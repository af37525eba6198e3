#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A DI API that misbehaves on request, for tests/unit/test_di_api_http.c.

Behaviour is chosen by the request's Service, so every scenario runs side by
side against one client. Prints its port on stdout, then serves until
killed. GET /_log returns every request seen (with CLOCK_MONOTONIC arrival
times) and how many bytes each endless response got out before the client
hung up.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
LOG = []
COUNTS = {}
FAIL_ONCE = ("flaky500", "slow", "close", "garbage")
PAGES = {None: (["a"], "p2"), "p2": (["b"], "p3"), "p3": (["c"], None)}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs: 1 s connect stalls


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # a fresh connection per request

    def log_message(self, *args):
        pass

    def do_GET(self):
        with LOCK:
            self._json(200, {"requests": LOG})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"_raw": raw.decode("latin-1")}
        key = (self.path, body.get("Service"), body.get("InstrumentationType"))
        with LOCK:
            COUNTS[key] = n = COUNTS.get(key, 0) + 1
            entry = {"t": time.monotonic(), "path": self.path, "body": body,
                     "answer": None, "sent": None}
            LOG.append(entry)
        try:
            if self.path == "/list-instrumentation-configurations":
                self._list(body, n, entry)
            elif self.path == "/report-instrumentation-configuration-status":
                self._report(body, n, entry)
            else:
                self._json(404, {"message": "no such path"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _report(self, body, n, entry):
        if body.get("Service") == "rep-fail" and n == 1:
            entry["answer"] = 503
            self._json(503, {"message": "try later"})
            return
        entry["answer"] = 200
        self._json(200, {"message": "ok"})

    def _list(self, req, n, entry):
        svc = req.get("Service")
        typ = req.get("InstrumentationType")
        synced = "SyncedAt" in req
        token = req.get("NextToken")

        if svc == "basic":
            if synced:
                self._json(200, {"Changed": False, "SyncedAt": 100.5})
            elif typ == "BREAKPOINT":
                data = json.dumps({"Location": {"MethodName": "f"}})
                self._json(200, {"Changed": True, "SyncedAt": 100.5,
                                 "LatestConfigurations": [
                                     {"LocationHash": "breakpoint-1",
                                      "ConfigurationData": data}]})
            else:
                self._json(200, {"Changed": True, "SyncedAt": 100.5,
                                 "LatestConfigurations": [
                                     {"LocationHash": "probe-1",
                                      "ConfigurationData":
                                          {"Location": {"MethodName": "g"}}}]})
        elif svc == "paged":
            if typ == "PROBE":
                self._json(404, {"message": "none"})
            elif synced and token is None:
                self._json(200, {"Changed": False, "SyncedAt": 7})
            else:
                hashes, nxt = PAGES[token]
                body = {"LatestConfigurations":
                        [{"LocationHash": h} for h in hashes],
                        "NextToken": nxt}
                if token is None:
                    body.update(Changed=True, SyncedAt=7)
                self._json(200, body)
        elif svc == "missing":
            self._json(404, {"message": "none"})
        elif svc in FAIL_ONCE and n == 1:
            if svc == "flaky500":
                self._json(500, {"message": "boom"})
            elif svc == "slow":
                time.sleep(2)
                self._json(200, {"Changed": True})
            elif svc == "close":
                self.close_connection = True
            else:
                self._raw(200, b"{not json")
        elif svc in FAIL_ONCE:
            # Changed every time: the client hands the list out once
            self._json(200, {"Changed": True, "LatestConfigurations": [
                {"LocationHash": "%s-%s" % (svc, typ)}]})
        elif svc == "huge-len":
            self.send_response(200)
            self.send_header("Content-Length", str(100 * 1000 * 1000))
            self.end_headers()
            self._endless(entry, lambda c: c)
        elif svc == "huge-chunked":
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self._endless(entry, lambda c: b"%x\r\n%s\r\n" % (len(c), c))
        elif svc == "sync":
            self._json(200, {"Changed": True, "SyncInterval": 3,
                             "LatestConfigurations": [{"LocationHash": "s"}]})
        elif svc == "hang":
            time.sleep(20)
            self._json(200, {"Changed": True})
        else:
            self._json(400, {"message": "unknown service"})

    def _endless(self, entry, frame):
        chunk = b" " * 65536
        sent = 0
        try:
            while sent < 200 * 1000 * 1000:
                self.wfile.write(frame(chunk))
                sent += len(chunk)
        finally:
            entry["sent"] = sent

    def _json(self, code, obj):
        self._raw(code, json.dumps(obj).encode())

    def _raw(self, code, data):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    server = Server(("127.0.0.1", 0), Handler)
    sys.stdout.write("%d\n" % server.server_address[1])
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
