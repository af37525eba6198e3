"""Contract tests: real framework apps under their usual servers, driven
over loopback HTTP by a load thread while the real `pydi -j trace` probes
them (issue 6).

Shared machinery: the apps (host 3.11, or 3.13/3.14 in the namespaced
forky root), the load thread that checks every answer, the `pydi trace`
runner whose every JSON line is validated against the schemas, and the
after-checks (still serving, code original, no sys.monitoring tool left).
"""
import http.client
import importlib.util
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(HERE, "apps")
SOURCE = os.environ.get("PYDI_SOURCE", os.path.dirname(HERE))
INTEGRATION = os.path.join(SOURCE, "tests", "integration")


def load_integration(name, filename):
    """tests/integration/<filename>, loaded by path as module name."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(INTEGRATION, filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The target process, rootfs and child_pid helpers are the integration
# suite's; load its conftest by path under another name (both files are
# called conftest.py).
integration = load_integration("pydi_integration_conftest", "conftest.py")

PYDI = integration.PYDI
HOST_PYTHON = integration.HOST_PYTHON
report = integration.report
line_markers = integration.line_markers
TRACE_TIMEOUT = 20


parse_line = integration.parse_cli_line
# tests/integration/agent_harness.py takes HOST_PYTHON, PYDI and
# parse_cli_line `from conftest`: here, this file, with the same values.
parse_cli_line = parse_line


# -- the app under test --

class App(integration.Target):
    """apps/<name>.py as __main__ under one interpreter: the host's 3.11,
    or 3.13/3.14 in its own mount and pid namespace in the forky root (the
    apps directory is copied into the root's /tmp)."""

    def __init__(self, name, version):
        self.name = name
        self.version = version
        self.module = name          # addressable by its file's module name
        self.dir_host = None
        script = f"{name}.py"
        self.lines = line_markers(os.path.join(APPS, script))
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "PYTHONDONTWRITEBYTECODE": "1"}
        if version == "3.11":
            super().__init__([HOST_PYTHON, os.path.join(APPS, script)],
                             env=env)
        else:
            root = integration.rootfs_path()
            python = f"/usr/bin/python{version}"
            if not os.access(root + python, os.X_OK):
                pytest.skip(f"{python} missing in {root}")
            dir_inside = f"/tmp/pydi-contract-{os.getpid()}-{name}-{version}"
            self.dir_host = root + dir_inside
            shutil.rmtree(self.dir_host, ignore_errors=True)
            shutil.copytree(APPS, self.dir_host,
                            ignore=shutil.ignore_patterns("__pycache__"))
            argv = ["unshare", "-mpf", f"--mount-proc={root}/proc", "chroot",
                    root, python, f"{dir_inside}/{script}"]
            super().__init__(argv, env=env, host_pid_of=integration.child_pid)
        match = re.fullmatch(r"port (\d+)", self.handshake)
        assert match, f"{name} {version}: handshake {self.handshake!r}"
        self.port = int(match.group(1))

    def get(self, path, timeout=10):
        """(status, headers, parsed JSON body) of one GET."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            try:
                data = json.loads(body)
            except ValueError:
                data = body
            return resp.status, headers, data
        finally:
            conn.close()

    def state(self):
        status, _, data = self.get("/_debug/state")
        assert status == 200, (status, data)
        return data

    def stop(self):
        super().stop()
        if self.dir_host:
            shutil.rmtree(self.dir_host, ignore_errors=True)


def start_app(name, version):
    app = App(name, version)
    app.baseline = app.state()
    return app


def finish_app(app):
    alive = app.alive()
    app.stop()
    assert alive, f"{app.name} {app.version} died during the tests"


# -- load --

class Route:
    """One route the load thread drives: path(n) -> URL, expect(n) -> the
    JSON it must answer, header (name, value) it must carry if any."""

    def __init__(self, name, path, expect, header=None):
        self.name = name
        self.path = path
        self.expect = expect
        self.header = header


class Load:
    """A thread sending GETs round-robin over the routes with a fresh n
    each time, checking every answer. n values are unique per request, so
    a snapshot's argument can be matched to a request actually sent."""

    def __init__(self, app, routes, pause=0.004):
        self.app = app
        self.routes = routes
        self.pause = pause
        self.lock = threading.Lock()
        self.sent = {r.name: [] for r in routes}      # n values, in order
        self.ok = {r.name: 0 for r in routes}
        self.failures = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"load-{app.name}")
        self.thread.start()

    def _one(self, route, n):
        path = route.path(n)
        try:
            status, headers, data = self.app.get(path)
        except Exception as e:      # noqa: BLE001 -- any failure counts
            return f"GET {path}: {type(e).__name__}: {e}"
        if status != 200:
            return f"GET {path}: status {status}: {data!r}"
        if data != route.expect(n):
            return f"GET {path}: {data!r} != {route.expect(n)!r}"
        if route.header and headers.get(route.header[0]) != route.header[1]:
            return f"GET {path}: header {route.header} missing: {headers}"
        return None

    def _run(self):
        n = 1000
        while not self.stopping.is_set():
            for route in self.routes:
                n += 1
                with self.lock:
                    self.sent[route.name].append(n)
                error = self._one(route, n)
                with self.lock:
                    if error:
                        self.failures.append(error)
                    else:
                        self.ok[route.name] += 1
                time.sleep(self.pause)

    def mark(self):
        with self.lock:
            return dict(self.ok), len(self.failures)

    def since(self, mark):
        """(answers per route, failures) since mark."""
        ok, nfail = mark
        with self.lock:
            return ({k: v - ok[k] for k, v in self.ok.items()},
                    list(self.failures[nfail:]))

    def was_sent(self, route, n):
        with self.lock:
            return n in self.sent[route]

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=15)


# -- pydi trace --

class Run:
    def __init__(self, rc, lines, stderr, seconds):
        self.rc = rc
        self.lines = lines
        self.stderr = stderr
        self.seconds = seconds
        self.statuses = [o for o in lines if o.get("type") == "status"]
        self.snapshots = [o for o in lines if o.get("type") == "snapshot"]

    def status(self, name):
        return [s for s in self.statuses if s["status"] == name]

    def __repr__(self):
        return (f"rc={self.rc} statuses={self.statuses} "
                f"snapshots={self.snapshots[:2]} stderr={self.stderr[-2000:]}")


def trace(app, target, *args):
    argv = [PYDI, "-j", "trace", "-p", str(app.pid), target, *args,
            "--timeout", str(TRACE_TIMEOUT)]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True,
                          timeout=TRACE_TIMEOUT + 40)
    lines = [parse_line(l) for l in proc.stdout.splitlines() if l.strip()]
    return Run(proc.returncode, lines, proc.stderr, time.monotonic() - start)


# Whether any READY carried "routes" (the helper's route walkers): the
# route assertions hold only where the field is present.
ROUTES_SEEN = {"present": 0, "absent": 0}


def route_shape(path):
    """A route path with its parameters' converters dropped, so each
    framework's spelling compares equal: /a/{n:int}, /a/<int:n> and a/<n>
    are all /a/{n}."""
    path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)
    path = re.sub(r"<(?:[^:>]+:)?(\w+)>", r"{\1}", path)
    path = path.lstrip("^").rstrip("$")
    return path if path.startswith("/") else "/" + path


def assert_routes(ready, method, path):
    """READY's routes, when present, name the probed route."""
    routes = ready.get("routes")
    if routes is None:
        ROUTES_SEEN["absent"] += 1
        return
    ROUTES_SEEN["present"] += 1
    for r in routes:
        methods = [m.upper() for m in (r.get("methods") or [])]
        if (route_shape(r.get("path", "")) == route_shape(path)
                and (method in methods or "*" in methods)):
            return
    raise AssertionError(f"READY routes {routes} do not name {method} {path}")


# -- snapshot values --

def args_of(snap):
    return snap["captures"]["entry"]["arguments"]


def ret_of(snap):
    return snap["captures"]["return"]["return_value"]


def int_of(value):
    assert value.get("type") == "int", value
    return int(value["value"])


def str_of(value):
    assert value.get("type") == "str", value
    return value["value"]


def dict_of(value):
    """A captured dict of simple values as a Python dict."""
    assert value.get("type") == "dict", value
    out = {}
    for e in value["entries"]:
        k, v = e["key"], e["value"]
        out[str_of(k)] = (int(v["value"]) if v.get("type") == "int"
                          else v.get("value"))
    return out


def entry_of(value, key):
    """The value under str key in a captured dict (None if not captured)."""
    for e in value.get("entries", []):
        if e["key"].get("value") == key:
            return e["value"]
    return None


def line_locals(snap, line):
    lines = snap["captures"]["lines"]
    assert list(lines) == [str(line)], lines
    return lines[str(line)]["locals"]


# -- one case, start to finish --

def assert_original(app):
    """The probed code is original again and no pydi monitoring remains."""
    after = app.state()
    for name, ids in after["codes"].items():
        assert ids["now"] == ids["original"], (
            f"{app.name} {app.version}: {name}.__code__ still replaced", ids)
    assert after["codes"] == app.baseline["codes"]
    if "tools" in after:
        for tool in ("3", "4"):
            assert after["tools"][tool] is None, after["tools"]
            assert after["events"][tool] == 0, after["events"]
            for name, events in after["local_events"].items():
                assert events[tool] == 0, (name, events)
        assert after["tools"] == app.baseline["tools"]


def assert_still_serves(app, load, routes):
    for route in routes:
        n = 7
        status, headers, data = app.get(route.path(n))
        assert (status, data) == (200, route.expect(n)), (route.name, data)
        if route.header:
            assert headers.get(route.header[0]) == route.header[1], headers
    # And the load keeps getting right answers.
    mark = load.mark()
    time.sleep(0.3)
    answered, failures = load.since(mark)
    assert not failures, failures
    assert all(answered.values()), answered


CASE_TIMES = []


def probe_case(app, load, routes, target, route_name, *args,
               method="GET", path=None):
    """Trace target until one snapshot while the load runs; check the run,
    that every request was answered correctly meanwhile, and that after
    pydi exits the app serves and its code is original. Returns the
    snapshot."""
    mark = load.mark()
    run = trace(app, target, "--count", "1", *args)
    answered, failures = load.since(mark)
    CASE_TIMES.append((f"{app.name} {app.version} {target}", run.seconds))
    assert run.rc == 0, run
    assert run.statuses and run.statuses[0]["status"] == "READY", run
    assert run.statuses[0].get("coverage") == "hooked-code", run
    assert not run.status("ERROR"), run
    assert len(run.snapshots) == 1, run
    if path is not None:
        assert_routes(run.statuses[0], method, path)
    assert not failures, f"wrong answers while probed: {failures[:5]}"
    assert answered[route_name] > 0, answered
    assert_still_serves(app, load, routes)
    assert_original(app)
    return run.snapshots[0]


def error_case(app, target, cause, words):
    run = trace(app, target)
    CASE_TIMES.append((f"{app.name} {app.version} {target}", run.seconds))
    assert run.rc == 2, run
    assert [s["status"] for s in run.statuses] == ["ERROR"], run
    assert not run.snapshots, run
    error = run.statuses[0]
    assert error["error_cause"] == cause, error
    for word in words:
        assert word in error["message"], (word, error)
    assert_original(app)
    return error


# Line probes that can never fire: each is an ERROR naming why, and where
# the lines are, the nearest executable ones. Apps mark their sync handler
# with LINE:sync_blank (one past a blank line), sync_body and sync_return,
# and their async handler with async_after_await (outside the sync one).
LINE_NOT_EXECUTABLE_CASES = ["partial_of_builtin",
                             "callable_instance_without_python_call",
                             "blank", "outside_function"]


def line_not_executable(app, module, sync_handler, case):
    lines = app.lines
    if case == "partial_of_builtin":
        error_case(app, f"{module}:builtin_partial@1", "LINE_NOT_EXECUTABLE",
                   ["no Python code"])
    elif case == "callable_instance_without_python_call":
        error_case(app, f"{module}:pick_first@1", "LINE_NOT_EXECUTABLE",
                   ["no Python code"])
    elif case == "blank":
        error_case(app, f"{module}:{sync_handler}@{lines['sync_blank'] - 1}",
                   "LINE_NOT_EXECUTABLE",
                   ["blank", str(lines["sync_body"]), str(lines["sync_return"])])
    else:
        error_case(app, f"{module}:{sync_handler}@{lines['async_after_await']}",
                   "LINE_NOT_EXECUTABLE",
                   ["outside", "nearest", str(lines["sync_return"])])


def pytest_sessionfinish(session, exitstatus):
    if CASE_TIMES:
        slowest = sorted(CASE_TIMES, key=lambda c: -c[1])[:3]
        report("contract: %d pydi runs, %.1f s in pydi; slowest %s" % (
            len(CASE_TIMES), sum(t for _, t in CASE_TIMES),
            ", ".join(f"{n} {t:.1f}s" for n, t in slowest)))
        report("contract: READY carried routes in %(present)d runs, "
               "lacked them in %(absent)d" % ROUTES_SEEN)
