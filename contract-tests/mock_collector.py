"""A mock OpenTelemetry collector: an OTLP/HTTP logs receiver (JSON
encoding, gzip when Content-Encoding says so) that keeps every log record it
is sent, flattened with its resource and scope:

  {"t": receipt time, "resource": {service.name: …, …}, "scope": {name,
   version}, "attributes": {event.name: …, aws.di.…: …}, "body": the body
   as plain Python values, "time_unix_nano", "observed_time_unix_nano",
   "severity_number", "severity_text", "event_name", "trace_id", "span_id",
   "request": index of the request it came in}

AnyValues are decoded to Python: stringValue -> str, intValue -> int (OTLP
JSON sends int64 as a string), doubleValue -> float, boolValue -> bool,
arrayValue -> list, kvlistValue -> dict, bytesValue -> bytes. Anything
malformed is recorded as a problem of its request (and answered 400).

It can be switched down at runtime: "closed" (stops listening: connection
refused until up()), "503" (answers 503 Service Unavailable), "hang"
(accepts and answers nothing until up()).

In process:
    col = MockCollector().start();  col.url -> http://127.0.0.1:N/v1/logs
    col.down("closed"); col.up(); col.records(); col.stop()
As a script: `/usr/bin/python3 mock_collector.py --port 0` prints the bound port as
its first line; GET /_admin/records lists what it got; POST /_admin/down
{"mode": "503"|"hang"} and POST /_admin/up switch it ("closed" takes the
admin endpoints down too: use it in process, or stop the script).
"""
import argparse
import base64
import gzip
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOGS_PATH = "/v1/logs"
DOWN_MODES = ("closed", "503", "hang")


class DecodeError(ValueError):
    pass


def _get(obj, camel, snake=None):
    """A field by its lowerCamelCase name (or the proto name, which OTLP
    receivers also accept)."""
    if camel in obj:
        return obj[camel]
    if snake and snake in obj:
        return obj[snake]
    return None


def decode_any(value):
    """One OTLP AnyValue (JSON form) as a Python value."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise DecodeError(f"AnyValue {value!r} must hold exactly one field")
    (kind, v), = value.items()
    if kind in ("stringValue", "string_value"):
        if not isinstance(v, str):
            raise DecodeError(f"stringValue {v!r}")
        return v
    if kind in ("boolValue", "bool_value"):
        if not isinstance(v, bool):
            raise DecodeError(f"boolValue {v!r}")
        return v
    if kind in ("intValue", "int_value"):
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise DecodeError(f"intValue {v!r}")
        try:
            return int(v)
        except ValueError:
            raise DecodeError(f"intValue {v!r}") from None
    if kind in ("doubleValue", "double_value"):
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise DecodeError(f"doubleValue {v!r}")
        return float(v)
    if kind in ("arrayValue", "array_value"):
        values = (v or {}).get("values") or []
        return [decode_any(x) for x in values]
    if kind in ("kvlistValue", "kvlist_value"):
        return decode_kvlist((v or {}).get("values") or [])
    if kind in ("bytesValue", "bytes_value"):
        return base64.b64decode(v)
    raise DecodeError(f"unknown AnyValue kind {kind!r}")


def decode_kvlist(items):
    out = {}
    for kv in items:
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise DecodeError(f"KeyValue {kv!r}")
        if kv["key"] in out:
            raise DecodeError(f"key {kv['key']!r} twice")
        out[kv["key"]] = decode_any(kv.get("value"))
    return out


def _nanos(value, what):
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DecodeError(f"{what} {value!r}") from None


def flatten(request_body):
    """Every log record of an ExportLogsServiceRequest (JSON), flattened."""
    if not isinstance(request_body, dict):
        raise DecodeError("request is not a JSON object")
    out = []
    for rl in _get(request_body, "resourceLogs", "resource_logs") or []:
        resource = decode_kvlist((rl.get("resource") or {}).get("attributes")
                                 or [])
        for sl in _get(rl, "scopeLogs", "scope_logs") or []:
            scope = sl.get("scope") or {}
            scope = {"name": scope.get("name"), "version": scope.get("version")}
            for lr in _get(sl, "logRecords", "log_records") or []:
                out.append({
                    "resource": resource,
                    "scope": scope,
                    "attributes": decode_kvlist(lr.get("attributes") or []),
                    "body": decode_any(lr.get("body")),
                    "time_unix_nano": _nanos(_get(lr, "timeUnixNano",
                                                  "time_unix_nano"), "timeUnixNano"),
                    "observed_time_unix_nano": _nanos(
                        _get(lr, "observedTimeUnixNano",
                             "observed_time_unix_nano"), "observedTimeUnixNano"),
                    "severity_number": _get(lr, "severityNumber",
                                            "severity_number"),
                    "severity_text": _get(lr, "severityText", "severity_text"),
                    "event_name": _get(lr, "eventName", "event_name"),
                    "trace_id": _get(lr, "traceId", "trace_id"),
                    "span_id": _get(lr, "spanId", "span_id"),
                })
    return out


class _Server(ThreadingHTTPServer):
    """Keeps its open connections, so going down closes the kept-alive
    ones too (a client's reused connection must fail like a new one)."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args, **kw):
        self.connections = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kw)

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self):
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MockCollector/1.0"

    def log_message(self, fmt, *args):
        pass

    @property
    def col(self):
        return self.server.collector

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        if self.path == "/_admin/records":
            self._send(200, {"records": self.col.records(),
                             "requests": self.col.requests()})
        else:
            self._send(404, {"message": f"no GET {self.path}"})

    def do_POST(self):
        raw = self._read_body()
        if self.path.startswith("/_admin/"):
            try:
                body = json.loads(raw) if raw else {}
                if self.path == "/_admin/down":
                    self.col.down(body.get("mode", "503"))
                elif self.path == "/_admin/up":
                    self.col.up()
                elif self.path == "/_admin/reset":
                    self.col.clear()
                else:
                    self._send(404, {"message": f"no admin {self.path}"})
                    return
            except (ValueError, TypeError) as e:
                self._send(400, {"message": str(e)})
                return
            self._send(200, {"mode": self.col.mode})
            return
        mode = self.col.mode
        if mode == "closed":        # a request that raced the close
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if mode == "hang":
            self.col._up_event.wait()
            self.close_connection = True
            return
        req = {"t": time.time(), "path": self.path,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "bytes": len(raw), "records": 0, "problems": [],
               "response": None}
        if mode == "503":
            req["response"] = 503
            self.col._add(req, [])
            self._send(503, {"message": "mock collector is down"})
            return
        code, answer, records = self._accept(raw, req)
        req["response"] = code
        self.col._add(req, records)
        self._send(code, answer)

    def _accept(self, raw, req):
        if self.path.split("?")[0] != LOGS_PATH:
            req["problems"].append(f"POST to {self.path}, not {LOGS_PATH}")
            return 404, {"message": "not found"}, []
        ctype = req["headers"].get("content-type", "")
        if not ctype.startswith("application/json"):
            req["problems"].append(f"Content-Type {ctype!r}: this collector "
                                   "reads OTLP/HTTP JSON only")
            return 415, {"message": "JSON only"}, []
        encoding = req["headers"].get("content-encoding", "identity").lower()
        req["encoding"] = encoding
        try:
            if encoding == "gzip":
                raw = gzip.decompress(raw)
            elif encoding not in ("identity", ""):
                raise DecodeError(f"Content-Encoding {encoding!r}")
            records = flatten(json.loads(raw))
        except (ValueError, OSError, EOFError) as e:
            req["problems"].append(f"{type(e).__name__}: {e}")
            return 400, {"message": str(e)}, []
        req["records"] = len(records)
        return 200, {"partialSuccess": {}}, records


class MockCollector:
    def __init__(self, host="127.0.0.1", port=0):
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._records = []
        self._requests = []
        self.mode = "up"
        self._up_event = threading.Event()
        self._up_event.set()
        self._server = None
        self._thread = None

    def _listen(self):
        server = _Server((self.host, self._port), _Handler)
        server.collector = self
        self._port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        daemon=True, name="mock-collector")
        self._thread.start()
        self._server = server

    def _unlisten(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._thread.join(timeout=5)
            self._server = None

    def start(self):
        self._listen()
        return self

    def stop(self):
        self._up_event.set()
        self._unlisten()

    @property
    def port(self):
        return self._port

    @property
    def url(self):
        """The OTLP/HTTP logs endpoint."""
        return f"http://{self.host}:{self._port}{LOGS_PATH}"

    def down(self, mode="closed"):
        if mode not in DOWN_MODES:
            raise ValueError(f"down mode {mode!r}: one of {DOWN_MODES}")
        self.up()
        if mode == "hang":
            self._up_event.clear()
        self.mode = mode
        if mode == "closed":
            self._unlisten()

    def up(self):
        mode, self.mode = self.mode, "up"
        self._up_event.set()
        if mode == "closed":
            self._listen()

    def _add(self, req, records):
        with self._lock:
            req["index"] = len(self._requests)
            self._requests.append(req)
            for r in records:
                r["t"] = req["t"]
                r["request"] = req["index"]
                self._records.append(r)

    def clear(self):
        with self._lock:
            self._records = []
            self._requests = []

    def records(self, since=None, **attributes):
        """Records (received at or after since) whose attributes hold every
        given value: records(**{"aws.di.location_hash": "abc"})."""
        with self._lock:
            out = list(self._records)
        return [r for r in out
                if (since is None or r["t"] >= since)
                and all(r["attributes"].get(k) == v
                        for k, v in attributes.items())]

    def by_hash(self, location_hash, since=None):
        return self.records(since, **{"aws.di.location_hash": location_hash})

    def requests(self):
        with self._lock:
            return list(self._requests)

    def problems(self):
        return [f"request #{r['index']}: {p}" for r in self.requests()
                for p in r["problems"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    col = MockCollector(args.host, args.port).start()
    print(col.port, flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    col.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
