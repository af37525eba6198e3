"""pydi proc list / proc show against real processes: the host's Python
3.11 web service, and 3.13/3.14 services in their own mount and pid
namespaces. Bad input gets a one-line error and a non-zero exit."""
import os
import subprocess
import urllib.request

import pytest

from conftest import (HERE, ROOTFS_PYTHONS, child_pid, pydi_json, run_pydi,
                      spawn_host, spawn_in_rootfs)

SERVICE = os.path.join(HERE, "targets", "web_service.py")
OTEL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_RESOURCE_ATTRIBUTES": "team=pay,deployment.environment.name=staging"}


def get(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        return r.read()


@pytest.fixture
def host_service():
    target = spawn_host(SERVICE, env=OTEL_ENV)
    yield target
    target.stop()


def test_proc_list_shows_host_web_service(host_service):
    assert get(host_service.handshake.split()[1]) == b"ok\n"
    procs = pydi_json("proc", "list")
    mine = [p for p in procs if p["pid"] == host_service.pid]
    assert len(mine) == 1, procs
    p = mine[0]
    assert p["version"].startswith("3.11.")
    assert p["service_name"] == "checkout"
    assert p["environment"] == "staging"
    assert p["offsets_source"] == "table"
    assert p["interpreter_kind"] == "binary"
    assert p["instrumentable"] is True and p["reason"] is None
    assert p["other_mount_ns"] is False and p["other_pid_ns"] is False
    assert int(p["runtime_address"], 16) > 0
    # Debian builds carry USDT notes.
    assert p["usdt"] is True


def test_proc_list_human_output_has_the_service(host_service):
    rc, out, err = run_pydi("proc", "list")
    assert rc == 0, err
    line = [l for l in out.splitlines() if l.split()[0] == str(host_service.pid)]
    assert line and "checkout" in line[0] and "staging" in line[0]


def test_proc_show_runtime_address_matches_symbol(host_service):
    p = pydi_json("proc", "show", str(host_service.pid))
    nm = subprocess.run(["readelf", "-sW", "--dyn-syms", p["exe"]],
                        capture_output=True, text=True).stdout
    sym = [l.split() for l in nm.splitlines() if l.endswith(" _PyRuntime")]
    assert sym, "no _PyRuntime in the binary"
    # Debian's python3.11 is not PIE: the address is the symbol's value.
    assert int(p["runtime_address"], 16) == int(sym[0][1], 16)


@pytest.mark.parametrize("python", ROOTFS_PYTHONS)
def test_proc_show_in_namespaced_root(rootfs, python):
    target = spawn_in_rootfs(rootfs, f"/usr/bin/{python}", SERVICE, env=OTEL_ENV)
    try:
        p = pydi_json("proc", "show", str(target.pid))
        want = python.replace("python", "")
        assert p["version"].startswith(want + "."), p
        assert p["offsets_source"] == "debug_offsets"
        assert p["other_mount_ns"] is True
        assert p["other_pid_ns"] is True
        assert p["ns_pid"] == 1
        assert p["service_name"] == "checkout"
        assert p["environment"] == "staging"
        assert p["free_threaded"] is False
        assert p["instrumentable"] is True, p["reason"]
        # The path as the kernel names it from our root.
        assert p["interpreter_file"].endswith(f"/usr/bin/{python}"), p
        listed = [q["pid"] for q in pydi_json("proc", "list")]
        assert target.pid in listed
        # Still serving after being inspected.
        port = target.handshake.split()[1]
        assert get(port) == b"ok\n"
    finally:
        target.stop()


def test_non_python_pid_is_a_one_line_error():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        rc, out, err = run_pydi("proc", "show", str(sleeper.pid))
        assert rc == 3
        assert err.count("\n") == 1 and "not a CPython process" in err
        rc, out, err = run_pydi("-j", "proc", "show", str(sleeper.pid))
        assert rc == 3 and '"error"' in out and out.count("\n") == 1
        # A probe on it: ERROR with the status model's cause, not a runtime error.
        rc, out, err = run_pydi("trace", "-p", str(sleeper.pid), "m:f")
        assert rc == 3 and "ERROR LANGUAGE_MISMATCH" in out, (out, err)
        assert "(sleep) is not a CPython process" in out, out
    finally:
        sleeper.kill()
        sleeper.wait()


def test_dead_pid_is_a_one_line_error():
    p = subprocess.Popen(["true"])
    p.wait()
    rc, out, err = run_pydi("proc", "show", str(p.pid))
    assert rc == 3 and "no such process" in err and err.count("\n") == 1


def test_pid_1_of_another_namespace_that_is_not_python(rootfs):
    argv = ["unshare", "-mpf", f"--mount-proc={rootfs}/proc", "chroot", rootfs,
            "/bin/sleep", "30"]
    outer = subprocess.Popen(argv)
    inner = None
    try:
        inner = child_pid(outer.pid)
        rc, out, err = run_pydi("proc", "show", str(inner))
        assert rc == 3 and err.count("\n") == 1, err
        assert "not a CPython process" in err
    finally:
        if inner:
            os.kill(inner, 9)
        outer.kill()
        outer.wait()


@pytest.mark.parametrize("args,code", [
    (["proc", "show"], 1),
    (["proc", "show", "abc"], 1),
    (["proc", "show", "-5"], 1),
    (["proc", "show", "99999999999"], 1),
    (["proc", "show", "1", "2"], 1),
    (["proc", "frobnicate"], 1),
    (["nosuchobject"], 1),
    (["--bogus-option"], 1),
    (["code", "show", "-p", "x", "1"], 1),
    (["code", "show"], 1),
])
def test_garbage_arguments_are_one_line_errors(args, code):
    rc, out, err = run_pydi(*args)
    assert rc == code, (args, rc, out, err)
    assert err.count("\n") == 1 and err.startswith("Error: "), err
    rc, out, err = run_pydi("-j", *args)
    assert rc == code and out.startswith('{"error"'), (args, out, err)


def test_ambiguous_prefix_lists_candidates():
    # "pro" is proc or probe: an error naming both, never a guess.
    rc, out, err = run_pydi("pro", "li")
    assert rc == 1 and "proc" in err and "probe" in err, (rc, err)
    rc, out, err = run_pydi("proc", "li")
    assert rc == 0, err
    rc, out, err = run_pydi("probe", "--socket", "/nonexistent/agent.sock", "li")
    assert rc == 3 and "pydi agent" in err, (rc, err)
    rc, out, err = run_pydi("proc", "s", "1", "2")
    assert rc == 1


def test_code_show_rejects_an_address_that_is_not_code(host_service):
    rc, out, err = run_pydi("code", "show", "-p", str(host_service.pid), "0x10")
    assert rc == 3 and err.count("\n") == 1


def test_remote_debug_opt_out_is_respected_on_314(rootfs):
    env = dict(OTEL_ENV, PYTHON_DISABLE_REMOTE_DEBUG="1")
    target = spawn_in_rootfs(rootfs, "/usr/bin/python3.14", SERVICE, env=env)
    try:
        p = pydi_json("proc", "show", str(target.pid))
        assert p["instrumentable"] is False
        assert "remote debugging is disabled" in p["reason"]
        rc, out, err = run_pydi("inject", str(target.pid))
        assert rc == 3 and "remote debugging is disabled" in err
        with open(f"/proc/{target.pid}/maps") as f:
            assert "pydi-helper" not in f.read()
        assert get(target.handshake.split()[1]) == b"ok\n"
    finally:
        target.stop()
