"""Real injection: the pydi binary loads its helper into live processes and
resolves probe targets there (`pydi inject`, `pydi -j resolve -p PID
TARGET`, `pydi revert`).

- the resolution matrix of targets/resolve_app.py run as a script, on the
  host's 3.11 and on 3.13/3.14 in the namespaced forky root;
- a FastAPI app under uvicorn that keeps serving HTTP while its route
  handler and its Depends() chain are resolved;
- refusals: one-line errors, exit code 3, the target running and unchanged;
- the symlink test: the container replaces its interpreter's path with a
  symlink to a host file; pydi reads the mapped file through
  /proc/PID/map_files and never opens that host file.
"""
import ctypes
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import (line_markers, HERE, HOST_PYTHON, PYDI, Target, child_pid, report,
                      rootfs_path, run_pydi)

APP = os.path.join(HERE, "targets", "resolve_app.py")
FASTAPI_APP = os.path.join(HERE, "targets", "fastapi_app.py")
MEMFD_MARK = "memfd:pydi"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
          "--inh-caps=-all", "--bounding-set=-all"]


L = line_markers(APP)
F = line_markers(FASTAPI_APP)
BLANK_IN_HANDLER = L["handler_blank_above"] + 1


# -- what a target looks like from outside --

def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def eventfd_count(pid):
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[eventfd]":
                count += 1
        except FileNotFoundError:
            pass
    return count


def helper_inodes(pid):
    """Inodes of the pydi memfds mapped in pid (one once injected)."""
    inodes = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if MEMFD_MARK in line:
                inodes.add(int(line.split()[4]))
    return inodes


def snapshot(pid):
    return {"fds": fd_count(pid), "eventfds": eventfd_count(pid),
            "helper": helper_inodes(pid)}


# -- targets --

class Rooted(Target):
    """A script under the forky root's interpreter in its own mount and pid
    namespace; /proc is mounted there unless mount_proc is False."""

    def __init__(self, root, python, script, *args, mount_proc=True,
                 env=None, copy_as=None):
        self.root = root
        self.dir_inside = f"/tmp/pydi-inject-{os.getpid()}-{id(self):x}"
        self.dir_host = root + self.dir_inside
        os.makedirs(self.dir_host)
        name = copy_as or os.path.basename(script)
        shutil.copy(script, os.path.join(self.dir_host, name))
        unshare = ["unshare", "-mpf"]
        if mount_proc:
            unshare.append(f"--mount-proc={root}/proc")
        argv = [*unshare, "chroot", root, python,
                f"{self.dir_inside}/{name}", *args]
        env = dict(env or {}, PATH="/usr/sbin:/usr/bin:/sbin:/bin",
                   PYTHONDONTWRITEBYTECODE="1")
        try:
            super().__init__(argv, env=env, host_pid_of=child_pid)
        except BaseException:
            shutil.rmtree(self.dir_host, ignore_errors=True)
            raise
        wait_for_python(self.pid)

    def stop(self):
        super().stop()
        shutil.rmtree(self.dir_host, ignore_errors=True)


def wait_for_python(pid):
    """chroot execs the interpreter in place: wait until it has."""
    deadline = time.time() + 10
    while time.time() < deadline:
        if "python" in os.readlink(f"/proc/{pid}/exe"):
            return
        time.sleep(0.02)
    raise RuntimeError(f"pid {pid} never became python")


def rooted_python(version):
    root = rootfs_path()
    python = f"/usr/bin/python{version}"
    if not os.access(root + python, os.X_OK):
        pytest.skip(f"{python} missing in {root}")
    return root, python


def spawn(version, script, *args, env=None, **kw):
    """The script as __main__ under one interpreter: the host's 3.11 or the
    forky root's 3.13/3.14."""
    if version == "3.11":
        full_env = dict(os.environ, **(env or {}))
        return Target([HOST_PYTHON, script, *args], env=full_env)
    root, python = rooted_python(version)
    return Rooted(root, python, script, *args, env=env, **kw)


def finish(target):
    """Close stdin: the target exits cleanly on its own (the helper's thread
    must not keep it alive or crash it at exit)."""
    target.stop()
    assert target.proc.returncode == 0, (
        f"target exited {target.proc.returncode}")


# -- pydi --

def pydi_reply(*args, timeout=120):
    """(exit code, the single JSON document on stdout, stderr)."""
    rc, out, err = run_pydi("-j", *args, timeout=timeout)
    lines = out.splitlines()
    assert len(lines) == 1, f"pydi -j {args}: stdout {out!r} stderr {err!r}"
    return rc, json.loads(lines[0]), err


def resolve(pid, target):
    return pydi_reply("resolve", "-p", str(pid), target)


def inject(pid):
    rc, reply, err = pydi_reply("inject", str(pid))
    assert rc == 0, (reply, err)
    assert reply["ok"] is True, reply
    return reply


# == 1. resolution matrix ==

INTERPRETERS = ["3.11", "3.13", "3.14"]

CASES = []


def case(name, target, rc=0):
    def register(check):
        CASES.append(pytest.param(target, rc, check, id=name))
        return check
    return register


def error(reply, cause, *words):
    assert reply["ok"] is False, reply
    assert reply["error_cause"] == cause, reply
    for word in words:
        assert word in reply["message"], (word, reply["message"])


def only_code(reply):
    assert reply["ok"] is True, reply
    assert len(reply["codes"]) == 1, reply["codes"]
    return reply["codes"][0]


def line_code(reply):
    assert reply["ok"] is True, reply
    codes = {c["code_id"]: c for c in reply["codes"]}
    return codes[reply["line_code_id"]]


@case("module_function", "resolve_app:handler")
def _(r, ctx):
    code = only_code(r)
    assert r["kind"] == "function" and r["object"] == "handler"
    assert code["qualname"] == "handler"
    assert code["file"] == ctx["app_path"]
    assert code["first_line"] == L["handler_def"]
    assert {L["handler_first"], L["handler_loop"], L["handler_return"]} <= \
        set(code["lines"])
    assert BLANK_IN_HANDLER not in code["lines"]
    assert [f["qualname"] for f in code["functions"]] == ["handler"]


@case("main_by_file_module_name", "resolve_app:handler")
def _(r, ctx):
    # `python resolve_app.py`: found as __main__ under its file's name,
    # and no second copy imported.
    assert r["module"] == "resolve_app"
    assert r["module_object"] == "__main__"
    assert r["module_objects"] == ["__main__"]
    assert only_code(r)["functions"][0]["module"] == "__main__"


@case("main_alias", "__main__:handler")
def _(r, ctx):
    assert r["module_object"] == "__main__" and r["module"] == "resolve_app"
    assert only_code(r)["qualname"] == "handler"


@case("method", "resolve_app:Service.method")
def _(r, ctx):
    assert r["kind"] == "method"
    assert only_code(r)["qualname"] == "Service.method"


@case("classmethod", "resolve_app:Service.cmethod")
def _(r, ctx):
    assert r["kind"] == "classmethod"
    assert only_code(r)["qualname"] == "Service.cmethod"


@case("staticmethod", "resolve_app:Service.smethod")
def _(r, ctx):
    assert r["kind"] == "staticmethod"
    assert only_code(r)["qualname"] == "Service.smethod"


@case("nested_function", "resolve_app:outer.<locals>.inner")
def _(r, ctx):
    code = only_code(r)
    assert r["kind"] == "function"
    assert code["qualname"] == "outer.<locals>.inner"
    assert code["parent_code_id"] is not None
    assert L["inner_body"] in code["lines"]


@case("async_def", "resolve_app:fetch")
def _(r, ctx):
    assert r["kind"] == "coroutine_function"
    assert only_code(r)["code_kind"] == "coroutine_function"


@case("generator", "resolve_app:counter")
def _(r, ctx):
    assert r["kind"] == "generator"
    assert L["counter_yield"] in only_code(r)["lines"]


@case("async_generator", "resolve_app:ticker")
def _(r, ctx):
    assert r["kind"] == "async_generator"
    assert only_code(r)["qualname"] == "ticker"


@case("partial", "resolve_app:partial_py")
def _(r, ctx):
    assert r["kind"] == "partial" and only_code(r)["qualname"] == "handler"


@case("callable_instance", "resolve_app:greeter")
def _(r, ctx):
    assert r["kind"] == "callable_instance"
    assert only_code(r)["qualname"] == "Greeter.__call__"


@case("builtin", "resolve_app:builtin_len")
def _(r, ctx):
    assert r["ok"] is True and r["kind"] == "builtin" and r["codes"] == []


@case("line", f"resolve_app:handler@{L['handler_loop']}")
def _(r, ctx):
    assert r["line"] == L["handler_loop"]
    assert line_code(r)["qualname"] == "handler"


@case("line_in_nested", f"resolve_app:outer.<locals>.inner@{L['inner_body']}")
def _(r, ctx):
    assert line_code(r)["qualname"] == "outer.<locals>.inner"


@case("file_line", f"resolve_app.py:{L['method_body']}")
def _(r, ctx):
    assert line_code(r)["qualname"] == "Service.method"
    assert r["module_object"] == "__main__"


# errors: exit code 2, the reply on stdout

@case("file_not_found_module", "colorsys:hls_to_rgb", rc=2)
def _(r, ctx):
    error(r, "FILE_NOT_FOUND", "not loaded", "never imports")


@case("file_not_found_file", "nope/missing.py:3", rc=2)
def _(r, ctx):
    error(r, "FILE_NOT_FOUND", "no loaded module")


@case("method_not_found", "resolve_app:handlr", rc=2)
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "'handlr'", "handler")


@case("line_not_executable_codeless", "resolve_app:builtin_len@3", rc=2)
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "no Python code")


@case("line_not_executable_partial_of_builtin",
      "resolve_app:partial_builtin@3", rc=2)
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "no Python code")


@case("line_not_executable_blank",
      f"resolve_app:handler@{BLANK_IN_HANDLER}", rc=2)
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "blank",
          f"nearest: {L['handler_blank_above']}, {L['handler_loop']}")


@case("line_not_executable_outside",
      f"resolve_app:handler@{L['handler_return'] + 6}", rc=2)
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "outside",
          f"nearest: {L['handler_return']}")


@case("overloaded_methods", "resolve_app:twice.<locals>.inner", rc=2)
def _(r, ctx):
    error(r, "OVERLOADED_METHODS", str(L["twice_first"] - 1),
          str(L["twice_second"] - 1))


@case("runtime_error_bad_line", "resolve_app:handler@x", rc=2)
def _(r, ctx):
    error(r, "RUNTIME_ERROR", "line number")


@case("runtime_error_file_without_line", "resolve_app.py:handler", rc=2)
def _(r, ctx):
    error(r, "RUNTIME_ERROR", "module:qualname")


@case("runtime_error_empty_qualname", "resolve_app:", rc=2)
def _(r, ctx):
    error(r, "RUNTIME_ERROR", "bad target")


MATRIX_RESULTS = {}


@pytest.fixture(scope="module", params=INTERPRETERS)
def matrix_target(request):
    """resolve_app.py run as a script, with the helper injected once."""
    version = request.param
    target = spawn(version, APP)
    assert target.handshake == "ready"
    try:
        before = snapshot(target.pid)
        hello = inject(target.pid)
        assert hello["python"].startswith(version + "."), hello
        assert hello["inject_path"] == "gil-free", hello
        assert hello["main_module"] == "resolve_app"
        app_dir = getattr(target, "dir_inside", os.path.dirname(APP))
        app_path = os.path.join(app_dir, "resolve_app.py")
        ctx = {"version": version, "hello": hello, "before": before,
               "after_inject": snapshot(target.pid), "app_path": app_path,
               "results": MATRIX_RESULTS.setdefault(version, {})}
        yield target, ctx
    finally:
        target.stop()


@pytest.mark.parametrize("target_name,want_rc,check", CASES)
def test_resolve_matrix(matrix_target, target_name, want_rc, check, request):
    target, ctx = matrix_target
    case_id = request.node.callspec.id
    ctx["results"][case_id] = False
    rc, reply, err = resolve(target.pid, target_name)
    assert rc == want_rc, (rc, reply, err)
    check(reply, ctx)
    assert target.alive()
    ctx["results"][case_id] = True


def test_resolve_matrix_left_target_intact(matrix_target):
    """After every resolve: one helper, no new fd since injection, the
    error exit code in human mode too, and a clean exit on stdin close."""
    target, ctx = matrix_target
    pid = target.pid
    rc, out, err = run_pydi("resolve", "-p", str(pid), "resolve_app:handlr")
    assert rc == 2 and "METHOD_NOT_FOUND" in out, (rc, out, err)
    rc, out, err = run_pydi("resolve", "-p", str(pid), "resolve_app:handler")
    assert rc == 0 and '"ok": true' in out, (rc, out, err)
    now = snapshot(pid)
    assert now == ctx["after_inject"], (ctx["after_inject"], now)
    assert len(now["helper"]) == 1
    assert now["eventfds"] == ctx["before"]["eventfds"] + 2
    results = ctx["results"]
    report(f"inject+resolve on Python {ctx['hello']['python']} "
           f"({'host' if ctx['version'] == '3.11' else 'namespaced root'}): "
           f"{sum(results.values())}/{len(results)} matrix targets as "
           f"expected, injected via {ctx['hello']['inject_path']} in "
           f"{ctx['hello']['inject_ms']:.1f} ms")
    finish(target)


# == 2. FastAPI under uvicorn ==

def http_get(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                timeout=timeout) as resp:
        return resp.status, json.loads(resp.read())


class Load:
    """Requests in a loop on a thread while pydi works on the server."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.failed = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        n = 0
        while not self.stopping.is_set():
            item = n % 3 + 1
            n += 1
            try:
                status, body = http_get(self.port, f"/items/{item}")
                if status == 200 and body["id"] == item and body["name"]:
                    self.ok += 1
                else:
                    self.failed.append((status, body))
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failed.append(repr(e))

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)


@pytest.mark.parametrize("version", ["3.11", "3.14"])
def test_fastapi_route_and_dependencies(version):
    """Debian's FastAPI + uvicorn on the host's 3.11; the forky root's
    FastAPI imports only under 3.14."""
    target = spawn(version, FASTAPI_APP)
    try:
        assert target.handshake.startswith("port "), target.handshake
        port = int(target.handshake.split()[1])
        assert http_get(port, "/items/2") == (200, {"id": 2, "name": "pear"})
        assert http_get(port, "/health") == (200, {"ok": True})
        before = snapshot(target.pid)
        load = Load(port)
        try:
            hello = inject(target.pid)
            replies = {}
            for name in ("fastapi_app:read_item", "fastapi_app:get_repo",
                         "fastapi_app:get_store", "__main__:read_item",
                         f"fastapi_app:read_item@{F['read_item_body']}",
                         f"fastapi_app:get_store@{F['get_store_yield']}",
                         "fastapi_app:get_rep"):
                replies[name] = resolve(target.pid, name)
        finally:
            load.stop()
        assert not load.failed, load.failed[:5]
        assert load.ok > 0

        def ok(name):
            rc, reply, err = replies[name]
            assert rc == 0, (name, reply, err)
            return reply

        handler = ok("fastapi_app:read_item")
        assert handler["kind"] == "coroutine_function"
        assert handler["module_object"] == "__main__"
        assert only_code(handler)["qualname"] == "read_item"
        sub = ok("fastapi_app:get_repo")
        assert sub["kind"] == "function"
        assert F["get_repo_body"] in only_code(sub)["lines"]
        subsub = ok("fastapi_app:get_store")
        assert subsub["kind"] == "generator"    # a yield dependency
        assert only_code(subsub)["qualname"] == "get_store"
        alias = ok("__main__:read_item")
        assert alias["codes"][0]["code_id"] == handler["codes"][0]["code_id"]
        assert line_code(ok(f"fastapi_app:read_item@{F['read_item_body']}"))[
            "qualname"] == "read_item"
        assert line_code(ok(f"fastapi_app:get_store@{F['get_store_yield']}"))[
            "qualname"] == "get_store"
        rc, missing, _ = replies["fastapi_app:get_rep"]
        assert rc == 2
        error(missing, "METHOD_NOT_FOUND", "get_repo")

        # Still serving, exactly one helper, its two eventfds and nothing else.
        assert http_get(port, "/items/3") == (200, {"id": 3, "name": "plum"})
        assert http_get(port, "/health") == (200, {"ok": True})
        after = snapshot(target.pid)
        assert len(after["helper"]) == 1
        assert after["eventfds"] == before["eventfds"] + 2
        report(f"FastAPI on Python {hello['python']}: route + Depends chain "
               f"resolved while serving; {load.ok} requests during "
               f"inject+{len(replies)} resolves, {len(load.failed)} failed; "
               f"inject via {hello['inject_path']} in "
               f"{hello['inject_ms']:.1f} ms")
        finish(target)
    finally:
        target.stop()


# == 3. refusals ==

def assert_refused(argv, pid, before, *words, as_user=None):
    """Exit code 3 and one line of error, in human and in JSON mode; the
    target (when there is one) running, without helper, fds unchanged."""
    prefix = as_user or []
    for json_mode in (False, True):
        cmd = [*prefix, PYDI, *(["-j"] if json_mode else []), *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=120)
        if json_mode:
            lines = proc.stdout.splitlines()
            assert len(lines) == 1, (proc.stdout, proc.stderr)
            message = json.loads(lines[0])["error"]
        else:
            assert proc.stdout == "", proc.stdout
            lines = proc.stderr.splitlines()
            assert len(lines) == 1, proc.stderr
            assert lines[0].startswith("Error: "), lines[0]
            message = lines[0]
        assert proc.returncode == 3, (cmd, proc.returncode, message)
        for word in words:
            assert word in message, (word, message)
        if before is not None:
            assert os.path.exists(f"/proc/{pid}"), "target died"
            assert snapshot(pid) == before, (before, snapshot(pid))
    return message


ALL_VERBS = (("inject", "{pid}"), ("resolve", "-p", "{pid}",
                                  "resolve_app:handler"))


def verbs(pid):
    return [[a.format(pid=pid) for a in v] for v in ALL_VERBS]


def wait_for_sleep(pid):
    """Until sleep(1) sits in its nanosleep (done opening its libraries and
    locale files)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(f"/proc/{pid}/syscall") as f:
            if f.read().split()[0] in ("35", "230"):   # (clock_)nanosleep
                return
        time.sleep(0.01)
    raise RuntimeError(f"pid {pid} never slept")


def test_refuses_non_python_process():
    proc = subprocess.Popen(["sleep", "600"])
    try:
        wait_for_sleep(proc.pid)
        before = snapshot(proc.pid)
        for argv in verbs(proc.pid):
            assert_refused(argv, proc.pid, before, "not a CPython process")
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_refuses_dead_pid_and_zombie():
    gone = subprocess.Popen(["true"])
    gone.wait()
    for argv in verbs(gone.pid):
        assert_refused(argv, gone.pid, None, "no such process")
    assert_refused(["revert", str(gone.pid)], gone.pid, None,
                   "no such process")
    zombie = subprocess.Popen(["true"])
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            with open(f"/proc/{zombie.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        for argv in verbs(zombie.pid):
            assert_refused(argv, zombie.pid, None, f"pid {zombie.pid}")
    finally:
        zombie.wait()


def test_refuses_process_running_adot_debugger():
    target = spawn("3.11", APP,
                   env={"OTEL_AWS_DYNAMIC_INSTRUMENTATION_ENABLED": "true"})
    try:
        before = snapshot(target.pid)
        for argv in verbs(target.pid):
            assert_refused(argv, target.pid, before,
                           "OTEL_AWS_DYNAMIC_INSTRUMENTATION_ENABLED")
        finish(target)
    finally:
        target.stop()


@pytest.fixture
def pydi_for_nobody():
    """pydi where uid 65534 can execute it."""
    work = tempfile.mkdtemp(prefix="pydi-nobody-")
    try:
        os.chmod(work, 0o755)
        path = os.path.join(work, "pydi")
        shutil.copy(PYDI, path)
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_refuses_without_ptrace_permission(pydi_for_nobody):
    """Unprivileged, no capabilities, against a root-owned target."""
    assert os.geteuid() == 0, "this test needs a root-owned target"
    target = spawn("3.11", APP)
    try:
        before = snapshot(target.pid)
        messages = []
        for argv in [*verbs(target.pid), ["revert", str(target.pid)]]:
            cmd = [*NOBODY, pydi_for_nobody]
            messages.append(_refused_as(cmd, argv, target.pid, before))
        report(f"ptrace denied (uid 65534, no caps, root target): "
               f"'{messages[0]}'")
        finish(target)
    finally:
        target.stop()


def _refused_as(cmd_prefix, argv, pid, before):
    for json_mode in (False, True):
        cmd = [*cmd_prefix, *(["-j"] if json_mode else []), *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 3, (cmd, proc.returncode, proc.stdout,
                                      proc.stderr)
        out = proc.stdout if json_mode else proc.stderr
        lines = out.splitlines()
        assert len(lines) == 1, (proc.stdout, proc.stderr)
        message = json.loads(lines[0])["error"] if json_mode else lines[0]
        assert "CAP_SYS_PTRACE" in message, message
        assert snapshot(pid) == before
    return message


@pytest.mark.parametrize("version", ["3.13", "3.14"])
def test_helper_load_failure_without_proc_in_target(version):
    """A namespaced target whose mount namespace has no /proc: the bootstrap
    cannot open /proc/self/fd/N. The error is reported, the memfd closed, and
    the target runs on."""
    root, python = rooted_python(version)
    assert not os.path.ismount(os.path.join(root, "proc")), (
        f"{root}/proc is mounted on the host: unmount it first")
    target = Rooted(root, python, APP, mount_proc=False)
    try:
        assert not os.listdir(f"/proc/{target.pid}/root/proc")
        before = snapshot(target.pid)
        for argv in verbs(target.pid):
            message = assert_refused(argv, target.pid, before,
                                     "failed to load", "/proc/self/fd/")
        report(f"helper load failure on {version} without /proc: "
               f"'{message}'")
        finish(target)
    finally:
        target.stop()


# Single-threaded and busy in Python; prints its counter every 50 ms and
# exits when stdin closes (polled, never blocking).
BUSY_SOURCE = """\
import select
import sys
import time

print("ready", flush=True)
n = 0
next_report = time.monotonic()
while True:
    n += 1
    if n % 4096 == 0 and time.monotonic() >= next_report:
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
            break
        print(n, flush=True)
        next_report = time.monotonic() + 0.05
"""


@pytest.mark.parametrize("version", ["3.13", "3.14"])
def test_helper_load_failure_on_pending_call_path(version, tmp_path):
    """The same failure where the only thread is busy in Python (pending
    call): the error comes back at once, not as a timeout."""
    root, python = rooted_python(version)
    assert not os.path.ismount(os.path.join(root, "proc"))
    script = tmp_path / "busy_app.py"
    script.write_text(BUSY_SOURCE)
    target = Rooted(root, python, str(script), mount_proc=False)
    try:
        before = snapshot(target.pid)
        start = time.monotonic()
        assert_refused(["inject", str(target.pid)], target.pid, before,
                       "failed to load", "/proc/self/fd/")
        elapsed = time.monotonic() - start
        assert elapsed < 4, f"{elapsed:.1f} s: reported as a timeout?"
        progress = [int(target.proc.stdout.readline()) for _ in range(3)]
        assert progress == sorted(progress) and progress[0] < progress[-1]
        report(f"helper load failure on {version}, pending-call path: "
               f"refused twice in {elapsed:.2f} s, target still busy")
        finish(target)
    finally:
        target.stop()


def test_inject_twice_reuses_the_helper():
    target = spawn("3.11", APP)
    try:
        pid = target.pid
        before = snapshot(pid)
        first = inject(pid)
        assert first["inject_path"] == "gil-free"
        after_first = snapshot(pid)
        assert len(after_first["helper"]) == 1
        assert after_first["eventfds"] == before["eventfds"] + 2
        assert after_first["fds"] == before["fds"] + 2
        second = inject(pid)
        assert second["inject_path"] == "reused", second
        assert second["inject_thread"] == 0
        assert second["pid"] == first["pid"]
        assert snapshot(pid) == after_first
        rc, reply, _ = resolve(pid, "resolve_app:handler")
        assert rc == 0 and snapshot(pid) == after_first
        rc, reply, _ = pydi_reply("revert", str(pid))
        assert rc == 0 and reply == {"ok": True, "reverted": 0}
        assert snapshot(pid) == after_first  # the helper stays resident
        report(f"inject twice: first {first['inject_path']} "
               f"({first['inject_ms']:.1f} ms), second "
               f"{second['inject_path']}; fds {before['fds']} -> "
               f"{after_first['fds']} (two eventfds), one memfd")
        finish(target)
    finally:
        target.stop()


def test_revert_without_helper():
    target = spawn("3.11", APP)
    try:
        before = snapshot(target.pid)
        for argv in (["revert", str(target.pid)],
                     ["revert", "-p", str(target.pid)]):
            rc, reply, err = pydi_reply(*argv)
            assert rc == 0, (reply, err)
            assert reply["ok"] is True and reply["reverted"] == 0
            assert "no pydi helper" in reply["message"]
            assert snapshot(target.pid) == before
        finish(target)
    finally:
        target.stop()


# == 4. symlinks the container controls ==

IN_ACCESS, IN_MODIFY, IN_ATTRIB = 0x1, 0x2, 0x4
IN_CLOSE_WRITE, IN_CLOSE_NOWRITE, IN_OPEN = 0x8, 0x10, 0x20
IN_MOVE_SELF, IN_DELETE_SELF = 0x800, 0x400


class Inotify:
    """Every open, read, write or attribute change of one file."""

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        mask = (IN_ACCESS | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE |
                IN_CLOSE_NOWRITE | IN_OPEN | IN_MOVE_SELF | IN_DELETE_SELF)
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        assert wd >= 0, os.strerror(ctypes.get_errno())

    def events(self):
        masks = []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return masks
        offset = 0
        while offset + 16 <= len(data):
            # struct inotify_event: wd, mask, cookie, len, name[len]
            _, mask, _, name_len = struct.unpack_from("iIII", data, offset)
            masks.append(hex(mask))
            offset += 16 + name_len
        return masks

    def close(self):
        os.close(self.fd)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def file_stat(path):
    """Without opening the file. Its atime is set older than its mtime, so
    (relatime) any read would move it."""
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
            st.st_atime_ns, st.st_mode)


def interpreter_mapping(pid):
    """(start, end, dev, inode, path) of the first mapping of the running
    interpreter binary."""
    exe = os.readlink(f"/proc/{pid}/exe")
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].strip() == exe:
                start, end = (int(a, 16) for a in fields[0].split("-"))
                return start, end, fields[3], int(fields[4]), exe
    raise AssertionError(f"{exe} not in the maps of {pid}")


# Calls tick() from C (map) every 50 ms, so both the hook uprobe and the
# --no-inject eval-frame uprobe see it; exits when stdin closes.
SYM_SOURCE = """\
import select
import sys


def tick(n):
    return n + 1


print("ready", flush=True)
n = 0
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 0.05)
    if ready and not sys.stdin.read(1):
        break
    n = sum(map(tick, [n]))
"""


def trace_one(pid, target, *extra):
    """`pydi -j trace` until one snapshot: (status lines, snapshot)."""
    rc, out, err = run_pydi("-j", "trace", "-p", str(pid), target,
                            "--count", "1", "--timeout", "20", *extra,
                            timeout=90)
    lines = [json.loads(line) for line in out.splitlines()]
    assert rc == 0, (rc, lines, err)
    statuses = [x for x in lines if x.get("type") == "status"]
    snapshots = [x for x in lines if x.get("type") != "status"]
    assert [x["status"] for x in statuses][:2] == ["READY", "ACTIVE"], lines
    assert len(snapshots) == 1, lines
    return statuses, snapshots[0]


def test_symlinked_interpreter_path_is_never_followed(tmp_path):
    """Run 3.14 from a copy of its binary at ROOT/tmp/pydi-sym/python3.14,
    then replace that path with a symlink to a host file. pydi proc show,
    inject, resolve and trace (the hook uprobe on the helper's memfd, and
    --no-inject's uprobe on the interpreter binary itself) all go through
    /proc/PID/map_files; the host file is never opened, read or changed."""
    root, python = rooted_python("3.14")
    app = tmp_path / "sym_app.py"
    app.write_text(SYM_SOURCE)
    sym_dir_inside = "/tmp/pydi-sym"
    sym_dir = root + sym_dir_inside
    shutil.rmtree(sym_dir, ignore_errors=True)
    os.makedirs(sym_dir)
    copied = os.path.join(sym_dir, "python3.14")
    shutil.copy2(root + python, copied)
    host_dir = tempfile.mkdtemp(prefix="pydi-sym-victim-")
    victim = os.path.join(host_dir, "host-binary")
    shutil.copy2("/usr/bin/true", victim)
    digest = sha256("/usr/bin/true")
    os.utime(victim, ns=(1_000_000_000, 2_000_000_000))
    target = None
    watch = None
    try:
        target = Rooted(root, f"{sym_dir_inside}/python3.14", str(app))
        pid = target.pid
        start, end, _, inode, exe = interpreter_mapping(pid)
        # The kernel names the file relative to our root; when the test
        # itself runs in a chroot, that adds the chroot's own prefix.
        assert exe.endswith(copied) and inode == os.stat(copied).st_ino

        victim_stat = file_stat(victim)
        # Replace the path the container controls (atomically, as an
        # attacker would): maps now says ".../python3.14 (deleted)", and
        # the same path under /proc/PID/root leads to the host file.
        link_tmp = os.path.join(sym_dir, ".link")
        os.symlink(victim, link_tmp)
        os.rename(link_tmp, copied)
        naive = f"/proc/{pid}/root{sym_dir_inside}/python3.14"
        assert os.stat(naive).st_ino == os.stat(victim).st_ino, (
            "the trap is not armed: the naive path does not reach the "
            "host file")
        watch = Inotify(victim)

        rc, shown, err = pydi_reply("proc", "show", str(pid))
        assert rc == 0, (shown, err)
        assert shown["version"].startswith("3.14."), shown
        assert shown["instrumentable"] is True, shown
        assert shown["other_mount_ns"] is True and shown["ns_pid"] == 1
        # Named from our root: a chroot running the suite adds its prefix.
        assert copied in shown["interpreter_file"], shown
        # The uprobe on the interpreter binary (--no-inject), first. A
        # snapshot proves it sits on the mapped inode: one placed through
        # the path would land on the host file and never fire (inotify
        # cannot see that: registering a uprobe opens no file).
        statuses, snap = trace_one(pid, "__main__:tick", "--no-inject")
        assert statuses[0]["coverage"] == "c-entered-frames"
        assert snap["stack"][0]["function"] == "tick"
        hello = inject(pid)
        assert hello["python"].startswith("3.14."), hello
        rc, reply, err = resolve(pid, "sym_app:tick")
        assert rc == 0 and only_code(reply)["qualname"] == "tick", (
            reply, err)
        rc, reply, err = resolve(pid, "sym_app:tock")
        assert rc == 2, (reply, err)
        # The uprobe on the helper's hook (in its memfd).
        statuses, snap = trace_one(pid, "sym_app:tick")
        assert statuses[0]["coverage"] == "hooked-code"
        assert snap["stack"][0]["function"] == "tick"

        # Nothing touched the host file: no inotify event at all, same
        # content, inode, times and mode.
        assert watch.events() == []
        assert file_stat(victim) == victim_stat
        assert os.path.islink(copied)
        assert os.readlink(copied) == victim

        # What the uprobe attach path will rely on: map_files reaches the
        # mapped inode, not what the path now names.
        mapped = os.stat(f"/proc/{pid}/map_files/{start:x}-{end:x}")
        assert mapped.st_ino == inode != os.stat(victim).st_ino
        with open(f"/proc/{pid}/map_files/{start:x}-{end:x}", "rb") as f:
            assert f.read(4) == b"\x7fELF"
        assert watch.events() == []
        assert sha256(victim) == digest     # last: reading moves its atime
        # The detector works: opening the naive path is seen.
        watch.events()
        with open(naive, "rb") as f:
            f.read(4)
        assert watch.events(), "inotify missed an open through the naive path"
        report(f"symlink test on Python {hello['python']}: interpreter path "
               f"replaced by a symlink to a host file; proc show, inject "
               f"({hello['inject_path']}), resolve and trace (eval-frame "
               f"uprobe on the binary, hook uprobe on the helper) worked; "
               f"host file untouched (0 inotify events, same "
               f"sha256/mtime/atime)")
        finish(target)
    finally:
        if watch:
            watch.close()
        if target:
            target.stop()
        shutil.rmtree(sym_dir, ignore_errors=True)
        shutil.rmtree(host_dir, ignore_errors=True)
