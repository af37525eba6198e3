"""A mock Dynamic Instrumentation (DI) API, wire-compatible with the one
ADOT's Python debugger polls (aws-otel-python-instrumentation,
debugger/_debugger_client.py and _status_reporter.py):

  POST /list-instrumentation-configurations
       {Service, Environment, InstrumentationType, SyncedAt?, NextToken?}
    -> {Changed, SyncedAt, SyncInterval?, LatestConfigurations: [...],
        NextToken?}
  POST /report-instrumentation-configuration-status
       {Service, Environment, Configurations: [{InstrumentationType,
        SignalType, LocationHash, Status, Time, ErrorCause?}]}   (<= 100)

Configuration lists are kept per (Service, Environment, InstrumentationType)
and can be changed while it runs; a changed list gets a later revision time,
so a client that sends the SyncedAt of an earlier answer gets Changed: true
again, and one that is current gets Changed: false with no configurations.
Lists are paged (page size settable; NextToken is opaque and serves the list
as it was when the first page was sent). SyncInterval is sent when set.

Failures can be switched on and off at runtime, for either endpoint, for
the next N requests or until cleared: "500", "404", "slow" (sleep N s, then
answer normally), "close" (close the connection without a response),
"invalid_json" (200 with a body that is not JSON), "huge" (200 with a
valid JSON body of N bytes).

Every request to the two endpoints is recorded (time, body, answer) for the
tests' assertions.

In process:
    api = MockDIAPI().start()
    api.set_configs("svc", "env", "BREAKPOINT", [config, ...])
    api.fail("500", endpoints=("list",), count=3); api.recover()
    api.list_calls(service="svc"); api.statuses("hash")
    api.stop()

As a script (`/usr/bin/python3 mock_di_api.py --port 0` prints the bound port as its
first line), driven through admin endpoints:
    GET  /_admin/requests
    POST /_admin/configs  {Service, Environment, InstrumentationType,
                           Configurations}
    POST /_admin/failure  {mode: null|"500"|…, endpoints, count, seconds, size}
    POST /_admin/settings {page_size, sync_interval, wire_form}
    POST /_admin/reset    (forget recorded requests)
"""
import argparse
import base64
import copy
import datetime
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LIST_PATH = "/list-instrumentation-configurations"
REPORT_PATH = "/report-instrumentation-configuration-status"
ENDPOINTS = {LIST_PATH: "list", REPORT_PATH: "report"}
TYPES = ("BREAKPOINT", "PROBE")
STATUSES = ("READY", "ACTIVE", "DISABLED", "ERROR")
ERROR_CAUSES = ("FILE_NOT_FOUND", "METHOD_NOT_FOUND", "LINE_NOT_EXECUTABLE",
                "OVERLOADED_METHODS", "LANGUAGE_MISMATCH", "RUNTIME_ERROR")
FAILURE_MODES = ("500", "404", "slow", "close", "invalid_json", "huge")
WIRE_FORMS = ("inline", "configuration_data")
MAX_REPORT_ENTRIES = 100


def now_ms():
    return int(time.time() * 1000)


def iso_ms(ms):
    """Epoch ms as ISO 8601 UTC with milliseconds: 2026-01-02T03:04:05.678Z."""
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_time_ms(value):
    """A SyncedAt as the client sent it (ISO 8601 string, epoch seconds or
    epoch ms) in epoch ms, or None when absent or unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value) if value > 1e12 else int(value * 1000)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            t = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=datetime.timezone.utc)
        return int(round(t.timestamp() * 1000))
    return None


class Failure:
    def __init__(self, mode, endpoints, count, seconds, size):
        if mode not in FAILURE_MODES:
            raise ValueError(f"failure mode {mode!r}: one of {FAILURE_MODES}")
        self.mode = mode
        self.endpoints = set(endpoints)
        self.remaining = count          # None: until recover()
        self.seconds = seconds
        self.size = size

    def describe(self):
        return {"mode": self.mode, "endpoints": sorted(self.endpoints),
                "remaining": self.remaining, "seconds": self.seconds,
                "size": self.size}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MockDIAPI/1.0"

    def log_message(self, fmt, *args):  # noqa: D401 -- quiet
        pass

    @property
    def api(self):
        return self.server.api

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

    def _send(self, code, body, content_type="application/json"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_admin/requests":
            self._send(200, {"requests": self.api.requests()})
        elif self.path == "/_admin/state":
            self._send(200, self.api.describe())
        else:
            self._send(404, {"Message": f"no GET {self.path}"})

    def do_POST(self):
        raw = self._read_body()
        if self.path.startswith("/_admin/"):
            self._admin(raw)
            return
        endpoint = ENDPOINTS.get(self.path.split("?")[0])
        record = {"t": time.time(), "path": self.path, "endpoint": endpoint,
                  "headers": {k.lower(): v for k, v in self.headers.items()},
                  "raw": raw[:65536].decode("utf-8", "replace"),
                  "body": None, "problems": [], "failure": None,
                  "response": None}
        try:
            record["body"] = json.loads(raw) if raw else None
        except ValueError as e:
            record["problems"].append(f"request body is not JSON: {e}")
        self.api._record(record)
        try:
            self._serve(endpoint, record)
        except (BrokenPipeError, ConnectionResetError):
            record["response"] = record["response"] or "client went away"
        finally:
            record["t_done"] = time.time()

    def _serve(self, endpoint, record):
        if endpoint is None:
            record["response"] = 404
            self._send(404, {"Message": f"no such operation {self.path}"})
            return
        failure = self.api._take_failure(endpoint)
        if failure is not None:
            record["failure"] = failure.mode
            if failure.mode == "slow":
                if self.api._stopping.wait(failure.seconds):
                    record["response"] = "stopped"
                    self.close_connection = True
                    return
            elif self._fail(failure, record):
                return
        if endpoint == "list":
            code, body = self.api._list(record)
        else:
            code, body = self.api._report(record)
        record["response"] = code
        self._send(code, body)

    def _fail(self, failure, record):
        """Answer as failure says; False when it only delays (slow)."""
        if failure.mode == "500":
            record["response"] = 500
            self._send(500, {"Message": "mock DI API: internal failure"})
        elif failure.mode == "404":
            record["response"] = 404
            self._send(404, {"Message": "mock DI API: not found"})
        elif failure.mode == "close":
            record["response"] = "closed"
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif failure.mode == "invalid_json":
            record["response"] = "200 invalid JSON"
            self._send(200, b'{"Changed": true, "LatestConfigurations": [{"Loc')
        elif failure.mode == "huge":
            record["response"] = f"200 huge ({failure.size} bytes)"
            self._send_huge(failure.size)
        return True

    def _send_huge(self, size):
        head = b'{"Changed": true, "LatestConfigurations": [], "Padding": "'
        tail = b'"}'
        pad = max(0, size - len(head) - len(tail))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(head) + pad + len(tail)))
        self.end_headers()
        self.wfile.write(head)
        chunk = b"x" * 65536
        while pad > 0:
            n = min(pad, len(chunk))
            self.wfile.write(chunk[:n])
            pad -= n
        self.wfile.write(tail)

    def _admin(self, raw):
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as e:
            self._send(400, {"Message": f"not JSON: {e}"})
            return
        try:
            if self.path == "/_admin/configs":
                self.api.set_configs(body["Service"], body["Environment"],
                                     body["InstrumentationType"],
                                     body.get("Configurations", []))
            elif self.path == "/_admin/failure":
                if body.get("mode") is None:
                    self.api.recover()
                else:
                    self.api.fail(body["mode"],
                                  endpoints=body.get("endpoints",
                                                     ("list", "report")),
                                  count=body.get("count"),
                                  seconds=body.get("seconds", 5.0),
                                  size=body.get("size", 64 << 20))
            elif self.path == "/_admin/settings":
                if "page_size" in body:
                    self.api.set_page_size(body["page_size"])
                if "sync_interval" in body:
                    self.api.set_sync_interval(body["sync_interval"])
                if "wire_form" in body:
                    self.api.set_wire_form(body["wire_form"])
            elif self.path == "/_admin/reset":
                self.api.clear_requests()
            else:
                self._send(404, {"Message": f"no admin {self.path}"})
                return
        except (KeyError, ValueError, TypeError) as e:
            self._send(400, {"Message": f"{type(e).__name__}: {e}"})
            return
        self._send(200, self.api.describe())


class MockDIAPI:
    def __init__(self, host="127.0.0.1", port=0, page_size=50,
                 sync_interval=None, wire_form="inline"):
        self.host = host
        self._port = port
        self._lock = threading.Lock()
        self._configs = {}      # (S, E, T) -> (revision ms, [config, ...])
        self._history = {}      # (S, E, T, revision ms) -> [config, ...]
        self._last_issued_ms = 0
        self._page_size = page_size
        self._sync_interval = sync_interval
        self._wire_form = wire_form
        self._failure = None
        self._requests = []
        self._stopping = threading.Event()
        self._server = None
        self._thread = None

    # -- lifecycle --

    def start(self):
        self._server = _Server((self.host, self._port), _Handler)
        self._server.api = self
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        daemon=True, name="mock-di-api")
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    @property
    def port(self):
        return self._port

    @property
    def url(self):
        return f"http://{self.host}:{self._port}"

    # -- what it serves --

    def set_configs(self, service, environment, itype, configs):
        """Replace the list for (service, environment, itype); the new list
        is Changed for every client that synced before."""
        if itype not in TYPES:
            raise ValueError(f"InstrumentationType {itype!r}")
        configs = copy.deepcopy(list(configs))
        with self._lock:
            revision = max(now_ms(), self._last_issued_ms + 1)
            key = (service, environment, itype)
            old = self._configs.get(key)
            if old and old[0] >= revision:
                revision = old[0] + 1
            self._configs[key] = (revision, configs)
            self._history[key + (revision,)] = configs

    def configs(self, service, environment, itype):
        with self._lock:
            return copy.deepcopy(self._configs.get(
                (service, environment, itype), (0, []))[1])

    def set_page_size(self, n):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"page size {n!r}")
        with self._lock:
            self._page_size = n

    def set_sync_interval(self, seconds):
        """SyncInterval in every answer (None: left out)."""
        with self._lock:
            self._sync_interval = seconds

    def set_wire_form(self, form):
        """"inline": each entry is the configuration object itself (ADOT's
        union or flat form); "configuration_data": each entry is
        {LocationHash, InstrumentationType, SignalType, ConfigurationData:
        "<the configuration as a JSON string>"}."""
        if form not in WIRE_FORMS:
            raise ValueError(f"wire form {form!r}")
        with self._lock:
            self._wire_form = form

    # -- failures --

    def fail(self, mode, endpoints=("list", "report"), count=None,
             seconds=5.0, size=64 << 20):
        """Fail requests to endpoints ("list", "report") as mode says, for
        the next count requests (None: until recover())."""
        failure = Failure(mode, endpoints, count, seconds, size)
        with self._lock:
            self._failure = failure

    def recover(self):
        with self._lock:
            self._failure = None

    def _take_failure(self, endpoint):
        with self._lock:
            f = self._failure
            if f is None or endpoint not in f.endpoints:
                return None
            if f.remaining is not None:
                f.remaining -= 1
                if f.remaining <= 0:
                    self._failure = None
            return f

    def describe(self):
        with self._lock:
            return {"port": self._port, "page_size": self._page_size,
                    "sync_interval": self._sync_interval,
                    "wire_form": self._wire_form,
                    "failure": self._failure.describe() if self._failure else None,
                    "configs": [{"Service": k[0], "Environment": k[1],
                                 "InstrumentationType": k[2],
                                 "Revision": iso_ms(v[0]),
                                 "Count": len(v[1])}
                                for k, v in self._configs.items()]}

    # -- the two operations --

    def _entry(self, config, form):
        if form == "inline":
            return config
        return {"LocationHash": config.get("LocationHash", ""),
                "InstrumentationType": config.get("InstrumentationType",
                                                  "BREAKPOINT"),
                "SignalType": config.get("SignalType", "SNAPSHOT"),
                "ConfigurationData": json.dumps(config)}

    @staticmethod
    def _token(key, revision, offset):
        text = json.dumps([list(key), revision, offset])
        return base64.urlsafe_b64encode(text.encode()).decode()

    @staticmethod
    def _untoken(token):
        try:
            key, revision, offset = json.loads(
                base64.urlsafe_b64decode(token.encode()))
            return tuple(key), int(revision), int(offset)
        except (ValueError, TypeError, AttributeError):
            return None

    def _list(self, record):
        body = record["body"]
        if not isinstance(body, dict):
            record["problems"].append("list: body is not a JSON object")
            return 400, {"Message": "body must be a JSON object"}
        service, env = body.get("Service"), body.get("Environment")
        itype = body.get("InstrumentationType")
        for name, value in (("Service", service), ("Environment", env)):
            if not isinstance(value, str) or not value:
                record["problems"].append(f"list: {name} {value!r}")
        if itype not in TYPES:
            record["problems"].append(f"list: InstrumentationType {itype!r}")
        if record["problems"]:
            return 400, {"Message": "; ".join(record["problems"])}
        key = (service, env, itype)
        with self._lock:
            page_size = self._page_size
            form = self._wire_form
            sync_interval = self._sync_interval
            token = body.get("NextToken")
            if token:
                parsed = self._untoken(token)
                if parsed is None or parsed[0] != key or \
                        key + (parsed[1],) not in self._history:
                    record["problems"].append(f"list: NextToken {token!r} "
                                              "is not one this API gave")
                    return 400, {"Message": "invalid NextToken"}
                _, revision, offset = parsed
                configs = self._history[key + (revision,)]
                changed = True
            else:
                revision, configs = self._configs.get(key, (0, []))
                offset = 0
                synced = parse_time_ms(body.get("SyncedAt"))
                record["synced_at_ms"] = synced
                changed = synced is None or synced < revision
            issued = max(now_ms(), revision)
            self._last_issued_ms = max(self._last_issued_ms, issued)
            answer = {"Changed": changed, "SyncedAt": iso_ms(issued),
                      "LatestConfigurations": []}
            if sync_interval is not None:
                answer["SyncInterval"] = sync_interval
            if changed:
                page = configs[offset:offset + page_size]
                answer["LatestConfigurations"] = [
                    self._entry(copy.deepcopy(c), form) for c in page]
                if offset + page_size < len(configs):
                    answer["NextToken"] = self._token(key, revision,
                                                      offset + page_size)
        record["changed"] = changed
        record["served"] = [c.get("LocationHash")
                            for c in answer["LatestConfigurations"]]
        return 200, answer

    def _report(self, record):
        body = record["body"]
        problems = record["problems"]
        if not isinstance(body, dict):
            problems.append("report: body is not a JSON object")
            return 400, {"Message": "body must be a JSON object"}
        for name in ("Service", "Environment"):
            if not isinstance(body.get(name), str) or not body.get(name):
                problems.append(f"report: {name} {body.get(name)!r}")
        entries = body.get("Configurations")
        if not isinstance(entries, list) or not entries:
            problems.append(f"report: Configurations {entries!r}")
            entries = []
        if len(entries) > MAX_REPORT_ENTRIES:
            problems.append(f"report: {len(entries)} entries > "
                            f"{MAX_REPORT_ENTRIES}")
        for i, e in enumerate(entries):
            where = f"report: Configurations[{i}]"
            if not isinstance(e, dict):
                problems.append(f"{where} is not an object")
                continue
            if e.get("InstrumentationType") not in TYPES:
                problems.append(f"{where}.InstrumentationType "
                                f"{e.get('InstrumentationType')!r}")
            if e.get("SignalType") != "SNAPSHOT":
                problems.append(f"{where}.SignalType {e.get('SignalType')!r}")
            if not isinstance(e.get("LocationHash"), str) or \
                    not e.get("LocationHash"):
                problems.append(f"{where}.LocationHash "
                                f"{e.get('LocationHash')!r}")
            if e.get("Status") not in STATUSES:
                problems.append(f"{where}.Status {e.get('Status')!r}")
            t = e.get("Time")
            if isinstance(t, bool) or not isinstance(t, int) or \
                    abs(t - time.time()) > 3600:
                problems.append(f"{where}.Time {t!r}: not epoch seconds now")
            if e.get("Status") == "ERROR":
                if e.get("ErrorCause") not in ERROR_CAUSES:
                    problems.append(f"{where}.ErrorCause "
                                    f"{e.get('ErrorCause')!r}")
            elif "ErrorCause" in e:
                problems.append(f"{where}: ErrorCause on {e.get('Status')}")
        if problems:
            return 400, {"Message": "; ".join(problems)}
        return 200, {"Message": "ok"}

    # -- what it saw --

    def _record(self, record):
        with self._lock:
            record["seq"] = len(self._requests)
            self._requests.append(record)

    def clear_requests(self):
        with self._lock:
            self._requests = []

    def requests(self, endpoint=None, since=None):
        with self._lock:
            out = list(self._requests)
        return [copy.deepcopy(r) for r in out
                if (endpoint is None or r["endpoint"] == endpoint)
                and (since is None or r["t"] >= since)]

    def list_calls(self, service=None, environment=None, itype=None,
                   since=None, ok=None):
        """Recorded list calls; ok=True: only those answered 200."""
        out = []
        for r in self.requests("list", since):
            b = r["body"] if isinstance(r["body"], dict) else {}
            if service is not None and b.get("Service") != service:
                continue
            if environment is not None and b.get("Environment") != environment:
                continue
            if itype is not None and b.get("InstrumentationType") != itype:
                continue
            if ok is not None and (r["response"] == 200) != ok:
                continue
            out.append(r)
        return out

    def status_reports(self, service=None, since=None, accepted_only=True):
        """Every status entry received, flattened, in arrival order:
        {t, service, environment, InstrumentationType, SignalType,
        LocationHash, Status, Time, ErrorCause?}. accepted_only: only
        from requests answered 200."""
        out = []
        for r in self.requests("report", since):
            if accepted_only and r["response"] != 200:
                continue
            b = r["body"] if isinstance(r["body"], dict) else {}
            if service is not None and b.get("Service") != service:
                continue
            for e in b.get("Configurations") or []:
                if isinstance(e, dict):
                    out.append(dict(e, t=r["t"], service=b.get("Service"),
                                    environment=b.get("Environment")))
        return out

    def statuses(self, location_hash, service=None, since=None):
        """The Status values reported for one LocationHash, in order."""
        return [e["Status"] for e in self.status_reports(service, since)
                if e.get("LocationHash") == location_hash]

    def problems(self):
        """Every problem found in a request (malformed body or fields)."""
        return [f"{r['path']} #{r['seq']}: {p}" for r in self.requests()
                for p in r["problems"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--sync-interval", type=int, default=None)
    parser.add_argument("--wire-form", choices=WIRE_FORMS, default="inline")
    parser.add_argument("--configs", metavar="FILE",
                        help="JSON list of {Service, Environment, "
                             "InstrumentationType, Configurations}")
    args = parser.parse_args(argv)
    api = MockDIAPI(args.host, args.port, args.page_size, args.sync_interval,
                    args.wire_form)
    if args.configs:
        with open(args.configs) as f:
            for item in json.load(f):
                api.set_configs(item["Service"], item["Environment"],
                                item["InstrumentationType"],
                                item.get("Configurations", []))
    api.start()
    print(api.port, flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
