"""`pydi trace` end to end against live processes (issue 4's acceptance),
on the host's 3.11 and on 3.13/3.14 in the namespaced forky root.

One target per interpreter (targets/trace_app.py) calls every probed
function continuously; each case is one short `pydi -j trace` run whose
every output line is validated against schemas/cli-output.schema.json
(and through it snapshot.schema.json):

- function probes: arguments and return value of a plain function called
  only from Python, a method, classmethod, staticmethod, closure, coroutine
  awaited by another, generator, a partial, a map() callback, a worker
  thread's function, and an exception's type and message;
- line probes: locals at the line, one snapshot per hit in a loop, and in a
  coroutine after an await;
- probe errors: exit 2 with the right error_cause;
- MaxHits, the rate limit, capture limits, redaction;
- revert after `trace` ends by --count, SIGINT and SIGTERM, checked from
  inside the target, which keeps serving;
- --no-inject on a map() callback.
"""
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import (line_markers, parse_cli_line, HERE, HOST_PYTHON, PYDI, Target, child_pid,
                      report, rootfs_path)

APP = os.path.join(HERE, "targets", "trace_app.py")
INTERPRETERS = ["3.11", "3.13", "3.14"]
RUN_TIMEOUT = 10        # --timeout for every run: a safety net only


L = line_markers(APP)



VALIDATED = {"lines": 0, "snapshots": 0}


def parse_line(line):
    """One line of `pydi -j trace` output, validated and counted."""
    obj = parse_cli_line(line)
    VALIDATED["lines"] += 1
    if obj.get("type") == "snapshot":
        VALIDATED["snapshots"] += 1
    return obj


class Run:
    def __init__(self, rc, lines, stderr):
        self.rc = rc
        self.lines = lines
        self.stderr = stderr
        self.statuses = [o for o in lines if o.get("type") == "status"]
        self.snapshots = [o for o in lines if o.get("type") == "snapshot"]

    def status(self, name):
        return [s for s in self.statuses if s["status"] == name]

    def __repr__(self):
        return (f"rc={self.rc} statuses={self.statuses} "
                f"snapshots={len(self.snapshots)} stderr={self.stderr[-2000:]}")


def trace(app, target, *args, timeout=RUN_TIMEOUT):
    argv = [PYDI, "-j", "trace", "-p", str(app.pid), target, *args,
            "--timeout", str(timeout)]
    proc = subprocess.run(argv, capture_output=True, text=True,
                          timeout=timeout + 30)
    lines = [parse_line(l) for l in proc.stdout.splitlines() if l.strip()]
    return Run(proc.returncode, lines, proc.stderr)


# -- the target --

class App(Target):
    """targets/trace_app.py as __main__ (and as module `trace_app`) under
    one interpreter; on 3.13/3.14 in its own mount and pid namespace."""

    def __init__(self, version):
        self.version = version
        self.dir_host = None
        if version == "3.11":
            super().__init__([HOST_PYTHON, APP])
            return
        root = rootfs_path()
        python = f"/usr/bin/python{version}"
        if not os.access(root + python, os.X_OK):
            pytest.skip(f"{python} missing in {root}")
        dir_inside = f"/tmp/pydi-trace-{os.getpid()}-{version}"
        self.dir_host = root + dir_inside
        os.makedirs(self.dir_host, exist_ok=True)
        shutil.copy(APP, os.path.join(self.dir_host, "trace_app.py"))
        argv = ["unshare", "-mpf", f"--mount-proc={root}/proc", "chroot",
                root, python, f"{dir_inside}/trace_app.py"]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "PYTHONDONTWRITEBYTECODE": "1"}
        super().__init__(argv, env=env, host_pid_of=child_pid)

    def state(self):
        self.proc.stdin.write("state\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"target {self.version} stopped answering"
        return json.loads(line)

    def stop(self):
        super().stop()
        if self.dir_host:
            shutil.rmtree(self.dir_host, ignore_errors=True)


@pytest.fixture(scope="module", params=INTERPRETERS)
def app(request):
    target = App(request.param)
    yield target
    alive = target.alive()
    target.stop()
    assert alive, f"the {request.param} target died during the tests"
    assert target.proc.returncode == 0


def assert_ran(run, count):
    assert run.rc == 0, run
    assert run.statuses and run.statuses[0]["status"] == "READY", run
    assert run.statuses[0].get("coverage") == "hooked-code", run
    assert len(run.status("ACTIVE")) == 1, run
    assert not run.status("ERROR"), run
    assert len(run.snapshots) == count, run


def args_of(snap):
    return snap["captures"]["entry"]["arguments"]


def ret_of(snap):
    return snap["captures"]["return"]["return_value"]


def int_of(value):
    assert value["type"] == "int", value
    return int(value["value"])


def functions(snap):
    return [f["function"] for f in snap.get("stack", [])]


# -- function probes --

def check_plain(snap):
    a = args_of(snap)
    assert int_of(a["b"]) == 3
    assert int_of(ret_of(snap)) == int_of(a["a"]) * 10 + 3
    assert functions(snap)[:2] == ["plain", "drive"]


def check_method(snap):
    a = args_of(snap)
    assert a["self"]["type"] == "Calc"
    assert int_of(a["self"]["fields"]["base"]) == 100
    assert int_of(ret_of(snap)) == int_of(a["x"]) + 100


def check_classmethod(snap):
    a = args_of(snap)
    assert a["cls"]["type"] == "type"
    assert int_of(ret_of(snap)) == int_of(a["x"]) * 7


def check_staticmethod(snap):
    a = args_of(snap)
    assert set(a) == {"a", "b"}
    assert int_of(a["b"]) == 1
    assert int_of(ret_of(snap)) == int_of(a["a"]) - 1


def check_closure(snap):
    a = args_of(snap)
    assert int_of(ret_of(snap)) == int_of(a["x"]) + 5


def check_coroutine(snap):
    a = args_of(snap)
    assert int_of(ret_of(snap)) == int_of(a["x"]) * 2 + 1
    assert functions(snap)[:2] == ["fetch", "handler"], snap["stack"]


def check_generator(snap):
    # Entry on the first start only, the return the generator's final
    # value -- never a yielded one.
    assert int_of(args_of(snap)["n"]) == 3
    assert ret_of(snap) == {"type": "str", "value": "gen-done-3"}


def check_partial(snap):
    a = args_of(snap)
    assert int_of(a["factor"]) == 3
    assert int_of(ret_of(snap)) == 3 * int_of(a["x"])


def check_map(snap):
    x = int_of(args_of(snap)["x"])
    assert x in (0, 1, 2)
    assert int_of(ret_of(snap)) == x * x


def check_thread(snap):
    k = int_of(args_of(snap)["k"])
    assert int_of(ret_of(snap)) == 2 * k
    assert functions(snap)[:2] == ["worker_job", "work"]


def check_exception(snap):
    x = int_of(args_of(snap)["x"])
    ret = snap["captures"]["return"]
    assert "return_value" not in ret, ret
    assert ret["throwable"]["type"] == "ValueError"
    assert ret["throwable"]["message"] == f"bad value {x}"


def check_edges(snap):
    a = args_of(snap)
    assert [int_of(a[k]) for k in "abcde"] == [-6, -5, 0, 256, 257], a
    assert (a["t"], a["f"]) == ({"type": "bool", "value": "true"},
                                {"type": "bool", "value": "false"}), a
    assert a["n"] == {"type": "NoneType", "is_null": True}, a
    assert int_of(ret_of(snap)) == -5


FUNCTION_CASES = [
    ("plain", "trace_app:plain", check_plain),
    ("method", "trace_app:Calc.method", check_method),
    ("classmethod", "trace_app:Calc.cm", check_classmethod),
    ("staticmethod", "trace_app:Calc.sm", check_staticmethod),
    ("closure", "trace_app:make_adder.<locals>.adder", check_closure),
    ("coroutine", "trace_app:fetch", check_coroutine),
    ("generator", "trace_app:gen", check_generator),
    ("partial", "trace_app:scaled", check_partial),
    ("map", "trace_app:square", check_map),
    ("thread", "trace_app:worker_job", check_thread),
    ("exception", "trace_app:fails", check_exception),
    ("known_by_address", "trace_app:edges", check_edges),
]


@pytest.mark.parametrize("name,target,check", FUNCTION_CASES,
                         ids=[c[0] for c in FUNCTION_CASES])
def test_function_probe(app, name, target, check):
    run = trace(app, target, "--count", "3")
    assert_ran(run, 3)
    for snap in run.snapshots:
        loc = snap["instrumentation"]["location"]
        assert loc["method_name"] == target.split(":")[1].split(".")[-1]
        assert loc["language"] == "python"
        check(snap)


@pytest.mark.parametrize("name,target,check", [
    ("generator", "trace_app:gen", check_generator),
    ("coroutine", "trace_app:fetch", check_coroutine),
], ids=["generator", "coroutine"])
def test_entry_fires_once_per_call(app, name, target, check):
    """A resumption (after a yield or an await) is not an entry: every
    entry pairs with its call's return. An entry per resumption would leave
    unpaired entries, which trace prints without a return when it ends."""
    run = trace(app, target, "--rate", "0", "--max-hits", "1000",
                timeout=2)
    assert run.rc == 0, run
    complete = [s for s in run.snapshots if "return" in s["captures"]]
    # At most the one call in flight when trace stopped lacks its return.
    assert len(run.snapshots) - len(complete) <= 1, run.snapshots
    assert len(complete) >= 10, run
    for snap in complete:
        check(snap)


COUNTERS = re.compile(r"calls (\d+) \(gated off (\d+)\).*call ends lost (\d+)")


@pytest.mark.parametrize("capture,traps_per_call", [("args", 1), ("args,return", 2)],
                         ids=["args", "args-return"])
def test_call_end_traps_only_to_capture(app, capture, traps_per_call):
    """A function probe that captures no return value learns where each call
    ended from the helper's ends ring: only the entry enters BPF, and the
    snapshot still has its duration and its return context. Capturing the
    return value, the end traps too."""
    before = app.state().get("traps", 0)
    run = trace(app, "trace_app:hot", "--capture", capture, "--rate", "0",
                "--max-hits", "0", timeout=2)
    traps = app.state()["traps"] - before
    assert run.rc == 0, run
    calls, gated, lost = map(int, COUNTERS.search(run.stderr).groups())
    passed = calls - gated
    assert passed >= 20 and lost == 0, run.stderr
    # A little slack (calls while the hook was in place but not yet armed
    # count as calls, and calls after trace read its counters trap), never
    # a second trap for each call.
    assert abs(traps - passed * traps_per_call) <= passed * 0.05 + 40, \
        (traps, passed, run.stderr)
    complete = [s for s in run.snapshots if "return" in s["captures"]]
    assert len(run.snapshots) - len(complete) <= 1, run.snapshots
    assert len(complete) >= 20, run
    for snap in complete:
        assert isinstance(snap["duration"], int), snap
        assert int_of(args_of(snap)["i"]) in range(20)
        assert ("return_value" in snap["captures"]["return"]) == (traps_per_call == 2)


# -- line probes --

def line_locals(snap, line):
    lines = snap["captures"]["lines"]
    assert list(lines) == [str(line)], lines
    return lines[str(line)]["locals"]


def test_line_probe_locals(app):
    line = L["compute_mid"]
    run = trace(app, f"trace_app:compute@{line}", "--count", "3")
    assert_ran(run, 3)
    for snap in run.snapshots:
        loc = line_locals(snap, line)
        assert int_of(loc["b"]) == 2
        # Before the line runs: s is set, p is not yet.
        assert int_of(loc["s"]) == int_of(loc["a"]) + 2
        assert "value" not in loc.get("p", {}), loc
        assert snap["stack"][0]["line_number"] == line
        assert snap["instrumentation"]["location"]["line_number"] == line


@pytest.mark.parametrize("form", ["qualname", "file"])
def test_line_probe_in_loop_fires_per_iteration(app, form):
    line = L["loop_body"]
    target = (f"trace_app:loop_sum@{line}" if form == "qualname"
              else f"trace_app.py:{line}")
    run = trace(app, target, "--count", "8", "--rate", "0")
    assert_ran(run, 8)
    seen = []
    for snap in run.snapshots:
        loc = line_locals(snap, line)
        i, total = int_of(loc["i"]), int_of(loc["total"])
        assert int_of(loc["n"]) == 5
        assert total == i * (i - 1) // 2, loc
        seen.append(i)
    # One snapshot per hit: consecutive iterations, none skipped.
    for before, after in zip(seen, seen[1:]):
        assert after == (before + 1) % 5, seen


def test_line_probe_in_coroutine_after_await(app):
    line = L["after_await"]
    run = trace(app, f"trace_app:fetch@{line}", "--count", "3")
    assert_ran(run, 3)
    for snap in run.snapshots:
        loc = line_locals(snap, line)
        assert int_of(loc["y"]) == 2 * int_of(loc["x"])
        assert "value" not in loc.get("z", {}), loc


# -- probe errors --

BLANK = L["blank_above"] + 1
ERROR_CASES = [
    ("partial-of-builtin", "trace_app:builtin_partial@1",
     "LINE_NOT_EXECUTABLE", ["no Python code"]),
    ("builtin", "trace_app:builtin_alias@1",
     "LINE_NOT_EXECUTABLE", ["no Python code"]),
    ("blank-line", f"trace_app:blank_and_comment@{BLANK}",
     "LINE_NOT_EXECUTABLE", ["blank", str(L["blank_above"]),
                             str(L["blank_and_comment_return"])]),
    ("comment-line", f"trace_app:blank_and_comment@{L['comment']}",
     "LINE_NOT_EXECUTABLE", ["comment", str(L["blank_above"]),
                             str(L["blank_and_comment_return"])]),
    ("blank-line-file", f"trace_app.py:{BLANK}",
     "LINE_NOT_EXECUTABLE", ["blank", str(L["blank_above"])]),
    ("outside-function", f"trace_app:plain@{L['loop_body']}",
     "LINE_NOT_EXECUTABLE", ["outside", "nearest", str(L["plain_body"])]),
    ("unknown-function", "trace_app:no_such_function",
     "METHOD_NOT_FOUND", ["no_such_function"]),
    ("unknown-module", "no_such_module:f",
     "FILE_NOT_FOUND", ["no_such_module"]),
]


@pytest.mark.parametrize("name,target,cause,words", ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
def test_probe_error(app, name, target, cause, words):
    run = trace(app, target)
    assert run.rc == 2, run
    assert [s["status"] for s in run.statuses] == ["ERROR"], run
    assert not run.snapshots, run
    error = run.statuses[0]
    assert error["error_cause"] == cause, error
    for word in words:
        assert word in error["message"], error


# -- MaxHits, rate, limits, redaction --

def test_max_hits_disables(app):
    run = trace(app, "trace_app:plain", "--max-hits", "3")
    assert run.rc == 0, run
    assert len(run.snapshots) == 3, run
    assert [s["status"] for s in run.statuses] == ["READY", "ACTIVE",
                                                    "DISABLED"], run
    # DISABLED comes after the last snapshot.
    assert run.lines[-1]["status"] == "DISABLED"


def test_rate_limit_holds(app):
    window, rate = 3, 5
    start = time.monotonic()
    run = trace(app, "trace_app:hot", "--rate", str(rate), "--max-hits",
                "1000", timeout=window)
    elapsed = time.monotonic() - start
    assert run.rc == 0, run
    got = len(run.snapshots)
    report(f"trace rate limit {app.version}: {got} snapshots at --rate "
           f"{rate} over {elapsed:.1f} s (target calls hot() ~1500/s)")
    # A bucket of one second's burst, then `rate` per second.
    assert got <= rate * window + rate + 1, run
    assert got >= rate * (window - 1), run


def test_limits_truncate(app):
    run = trace(app, "trace_app:take", "--count", "1", "--limits",
                "string=16,collection=4")
    assert_ran(run, 1)
    a = args_of(run.snapshots[0])
    text, items = a["text"], a["items"]
    assert text["type"] == "str" and text["truncated"] is True
    assert text["size"] == 300
    assert text["value"] == ("abcdefghij" * 2)[:16]
    assert items["type"] == "list" and items["truncated"] is True
    assert items["size"] == 50
    assert [int_of(e) for e in items["elements"]] == [0, 1, 2, 3]
    assert int_of(ret_of(run.snapshots[0])) == 350


def test_redacts_password(app):
    run = trace(app, "trace_app:login", "--count", "1")
    assert_ran(run, 1)
    a = args_of(run.snapshots[0])
    assert a["user"] == {"type": "str", "value": "alice"}
    assert a["password"].get("not_captured_reason") == "redacted", a
    assert "value" not in a["password"]
    assert "hunter2" not in json.dumps(run.lines)


# -- revert --

class Streaming:
    """pydi -j trace running in the background, its lines in a queue."""

    def __init__(self, app, target, *args):
        self.proc = subprocess.Popen(
            [PYDI, "-j", "trace", "-p", str(app.pid), target, *args,
             "--timeout", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, predicate, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            obj = parse_line(line)
            self.seen.append(obj)
            if predicate(obj):
                return obj
        raise AssertionError(f"pydi never printed the line wanted; saw "
                             f"{self.seen}, stderr {self.stderr()}")

    def stderr(self):
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read()

    def finish(self, timeout=15):
        rc = self.proc.wait(timeout=timeout)
        while True:
            line = self.lines.get(timeout=5)
            if line is None:
                break
            self.seen.append(parse_line(line))
        return rc


def hooked_in(state, code_name, before):
    """Whether the state shows a hook on code_name: a swapped code object
    (3.11) or local sys.monitoring events (3.12+)."""
    if "local_events" in state:
        return any(state["local_events"][code_name])
    return state["codes"][code_name] != before["codes"][code_name]


REVERT_PROBES = {
    "function": ("trace_app:plain", "plain"),
    "closure": ("trace_app:make_adder.<locals>.adder",
                "make_adder.<locals>.adder"),
    "coroutine-line": (f"trace_app:fetch@{L['after_await']}", "fetch"),
}


@pytest.mark.parametrize("probe", list(REVERT_PROBES))
@pytest.mark.parametrize("how", ["count", "sigint", "sigterm"])
def test_revert_on_exit(app, how, probe):
    target, code_name = REVERT_PROBES[probe]
    before = app.state()
    args = ["--count", "2"] if how == "count" else []
    run = Streaming(app, target, *args)
    try:
        ready = run.wait_for(lambda o: o.get("status") in ("READY", "ERROR"))
        assert ready["status"] == "READY", ready
        assert ready["codes"] and all(c["events"] for c in ready["codes"]), ready
        if how != "count":
            # (With --count, trace may be done and reverted already.)
            during = app.state()
            assert hooked_in(during, code_name, before), (before, during)
            if "tools" in during:
                assert [t for t, name in during["tools"].items()
                        if name == "pydi"] in (["3"], ["4"]), during["tools"]
        run.wait_for(lambda o: o.get("type") == "snapshot")
        if how == "sigint":
            run.proc.send_signal(signal.SIGINT)
        elif how == "sigterm":
            run.proc.send_signal(signal.SIGTERM)
        rc = run.finish()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    assert rc == 0, (rc, run.seen, run.stderr())
    snaps = [o for o in run.seen if o.get("type") == "snapshot"]
    if how == "count":
        assert len(snaps) == 2, run.seen
    after = app.state()
    assert after["codes"] == before["codes"]
    for key in ("tools", "events", "local_events"):
        assert after.get(key) == before.get(key), (key, before, after)
    if "events" in after:
        assert not any(after["events"].values())
        assert not any(any(v) for v in after["local_events"].values())
    # And it keeps serving: every loop moves on.
    time.sleep(0.3)
    later = app.state()
    for loop, ticks in after["ticks"].items():
        assert later["ticks"][loop] > ticks, (after, later)


def test_second_trace_on_the_same_function(app):
    """Another pydi hooking the same function (on 3.11 the helper builds one
    new hooked code object for both probes) leaves the first capturing:
    while both are hooked, and after the second has gone."""
    def ticks():
        return app.state()["ticks"]["driver"]

    def captured_after(run, tick):
        return lambda o: (o.get("type") == "snapshot"
                          and int_of(args_of(o)["a"]) > tick)

    before = app.state()
    first = Streaming(app, "trace_app:compute", "--rate", "50")
    second = None
    try:
        ready = first.wait_for(lambda o: o.get("status") in ("READY", "ERROR"))
        assert ready["status"] == "READY", ready
        first.wait_for(lambda o: o.get("type") == "snapshot")
        second = Streaming(app, "trace_app:compute", "--rate", "50")
        ready = second.wait_for(lambda o: o.get("status") in ("READY", "ERROR"))
        assert ready["status"] == "READY", ready
        both = ticks()
        second.wait_for(captured_after(second, both))
        first.wait_for(captured_after(first, both))
        second.proc.send_signal(signal.SIGINT)
        assert second.finish() == 0, second.stderr()
        alone = ticks()
        first.wait_for(captured_after(first, alone))
        first.proc.send_signal(signal.SIGINT)
        assert first.finish() == 0, first.stderr()
    finally:
        for run in (first, second):
            if run and run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
    assert app.state()["codes"] == before["codes"]


# -- --no-inject --

@pytest.mark.parametrize("module", ["__main__", "trace_app"])
def test_no_inject_sees_map_callback(app, module):
    before = app.state()
    run = trace(app, f"{module}:square", "--no-inject", "--count", "3")
    assert run.rc == 0, run
    ready = run.statuses[0]
    assert ready["status"] == "READY", run
    assert ready["coverage"] == "c-entered-frames", ready
    assert ready.get("warnings"), ready
    assert len(run.snapshots) == 3, run
    for snap in run.snapshots:
        assert int_of(args_of(snap)["x"]) in (0, 1, 2)
    assert app.state()["codes"] == before["codes"]


def test_zz_report_validated(app):
    """Last in the module per interpreter: how much the schemas saw."""
    report(f"trace {app.version}: {VALIDATED['lines']} JSON lines "
           f"({VALIDATED['snapshots']} snapshots) validated so far")
    assert VALIDATED["snapshots"] > 0
