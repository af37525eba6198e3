"""The helper hooks code, per probe, and reverts exactly: in process.

targets/hook_app.py imports the built helper (_pydi_helper), starts it and
drives it through dispatch() with hook / unhook / hooks / revert-all, arming
gates as the agent would and recording every call that passes a gate (what
BPF would see: slot, event, line, value, the calling frame's code, thread).
It runs on the host's 3.11 (bytecode rewrite + __code__ swap), pyenv's 3.12
when present, and 3.13/3.14 in the forky root (sys.monitoring); each of its
scenarios is one test here.

Two more nets under the 3.11 rewriter: every code object of the stdlib is
rewritten with every hook point and verified (targets/hook_sweep.py), and
CPython's own unit tests run with every function of the modules they test
hooked at every point (targets/hook_stdlib_tests.py; needs pyenv builds,
which carry the test suite).
"""
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import HERE, HOST_PYTHON, SOURCE, report, rootfs_path

TARGETS = os.path.join(HERE, "targets")
APP = os.path.join(TARGETS, "hook_app.py")
SWEEP = os.path.join(TARGETS, "hook_sweep.py")
STDLIB_TESTS = os.path.join(TARGETS, "hook_stdlib_tests.py")
BOOTSTRAP = os.path.join(SOURCE, "userspace-rebind", "bootstrap.py")
HELPER = os.environ.get("PYDI_HELPER", os.path.join(
    SOURCE, "build", "userspace-rebind", "_pydi_helper.abi3.so"))
PYENV = os.path.expanduser("~/.pyenv/versions")
PYENV_312 = os.path.join(PYENV, "3.12.1", "bin", "python3.12")

VERSIONS = ["3.11", "3.12", "3.13", "3.14"]


def _scenarios():
    with open(APP) as f:
        return re.findall(r"^@scenario\ndef (\w+)\(", f.read(), re.M)


SCENARIOS = _scenarios()


class Interpreter:
    def __init__(self, version, python, root=None):
        self.version = version
        self.python = python        # as the process sees it
        self.root = root            # chroot directory, or None

    def workdir(self, files):
        """A directory holding files: (on the host, as the process sees
        it)."""
        if self.root:
            inside = f"/tmp/pydi-hook-{os.getpid()}-{self.version}"
            host = self.root + inside
            shutil.rmtree(host, ignore_errors=True)
            os.makedirs(host)
        else:
            host = inside = tempfile.mkdtemp(prefix="pydi-hook-")
        for path in files:
            shutil.copy(path, host)
        return host, inside

    def run(self, args, timeout=600):
        argv = [self.python, *args]
        if self.root:
            argv = [shutil.which("chroot") or "/usr/sbin/chroot", self.root,
                    *argv]
        env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run(argv, capture_output=True, text=True, env=env,
                              timeout=timeout)


@functools.lru_cache(maxsize=None)
def interpreter(version):
    if version == "3.11":
        return Interpreter(version, HOST_PYTHON)
    if version == "3.12":
        if not os.access(PYENV_312, os.X_OK):
            pytest.skip(f"no CPython 3.12 here ({PYENV_312} missing)")
        return Interpreter(version, PYENV_312)
    root = rootfs_path()
    python = f"/usr/bin/python{version}"
    if not os.access(root + python, os.X_OK):
        pytest.skip(f"{python} missing in {root}")
    return Interpreter(version, python, root)


@pytest.fixture(scope="session")
def helper():
    if not os.path.exists(HELPER):
        pytest.fail(f"the helper is not built: {HELPER}")
    return HELPER


@functools.lru_cache(maxsize=None)
def app_results(version):
    """name -> the app's result for each scenario, and the process's
    stderr (the app runs them all in one process: what one leaves behind
    the next would see)."""
    interp = interpreter(version)
    host, inside = interp.workdir([APP, HELPER])
    try:
        proc = interp.run([f"{inside}/hook_app.py", inside])
    finally:
        shutil.rmtree(host, ignore_errors=True)
    results = {}
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        if "name" in record:
            results[record["name"]] = record
    return results, proc


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("version", VERSIONS)
def test_scenario(helper, version, name):
    results, proc = app_results(version)
    result = results.get(name)
    assert result is not None, (
        f"hook_app on {version} never reported {name!r} (exit "
        f"{proc.returncode}): {proc.stderr[-3000:]}")
    assert result["ok"], "\n".join(result["failures"])
    if result["info"]:
        report(f"hook {version} {name}: {json.dumps(result['info'])}")


def test_app_exits_cleanly(helper):
    for version in VERSIONS:
        try:
            results, proc = app_results(version)
        except pytest.skip.Exception:
            continue
        assert proc.returncode == 0, f"{version}: {proc.stderr[-3000:]}"
        assert len(results) == len(SCENARIOS), sorted(results)


def test_rewriter_sweeps_the_stdlib(helper):
    """3.11: every stdlib code object, every hook point, verified; the
    identity rewrite gives back the original bytes."""
    interp = interpreter("3.11")
    host, inside = interp.workdir([SWEEP, HELPER, BOOTSTRAP])
    try:
        proc = interp.run([f"{inside}/hook_sweep.py", inside,
                           f"{inside}/bootstrap.py"])
    finally:
        shutil.rmtree(host, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    report(f"hook sweep 3.11: {summary['codes']} codes of {summary['files']} "
           f"files, {summary['sites']} hook sites, {summary['seconds']} s")
    assert summary["codes"] > 5000, summary
    assert summary["failures_count"] == 0, summary["failures"]
    assert summary["identity_mismatches_count"] == 0, (
        summary["identity_mismatches"])
    assert summary["lines_without_site_count"] == 0, (
        summary["lines_without_site"])


# CPython test modules and the modules whose every function gets hooked.
STDLIB_SUITES = [
    ("test.test_json", "json", "json.decoder", "json.encoder", "json.scanner"),
    ("test.test_contextlib", "contextlib"),
    ("test.test_contextlib_async", "contextlib"),
    ("test.test_textwrap", "textwrap"),
    ("test.test_argparse", "argparse"),
    ("test.test_dataclasses", "dataclasses"),
    # Their own functions hooked: line events, tracebacks, generators,
    # coroutines, with, except*.
    ("test.test_sys_settrace", "test.test_sys_settrace"),
    ("test.test_traceback", "traceback", "test.test_traceback"),
    ("test.test_generators", "test.test_generators"),
    ("test.test_coroutines", "test.test_coroutines"),
    ("test.test_asyncgen", "test.test_asyncgen"),
    ("test.test_with", "test.test_with"),
    ("test.test_exceptions", "test.test_exceptions"),
    ("test.test_except_star", "test.test_except_star"),
]
STDLIB_PYTHONS = ["3.11.7", "3.12.1", "3.13.0"]


@pytest.mark.parametrize("suite", STDLIB_SUITES, ids=lambda s: s[0][5:])
@pytest.mark.parametrize("build", STDLIB_PYTHONS)
def test_cpython_unit_tests_pass_hooked(helper, build, suite):
    minor = ".".join(build.split(".")[:2])
    python = os.path.join(PYENV, build, "bin", f"python{minor}")
    tests = os.path.join(PYENV, build, "lib", f"python{minor}", "test")
    if not os.access(python, os.X_OK) or not os.path.isdir(tests):
        pytest.skip(f"no pyenv CPython {build} with its test suite here "
                    f"({python})")
    interp = Interpreter(build, python)
    host, inside = interp.workdir([STDLIB_TESTS, HELPER, BOOTSTRAP])
    try:
        runs = {}
        for mode in ("plain", "hook"):
            proc = interp.run([f"{inside}/hook_stdlib_tests.py", inside,
                               f"{inside}/bootstrap.py", mode, *suite])
            assert proc.returncode == 0, proc.stderr[-3000:]
            runs[mode] = json.loads(proc.stdout.splitlines()[-1])
    finally:
        shutil.rmtree(host, ignore_errors=True)
    plain, hooked = runs["plain"], runs["hook"]
    report(f"hook cpython-tests {build} {suite[0]}: {hooked['codes']} codes "
           f"hooked, {hooked['run']} tests, {hooked['traps']} traps")
    for key in ("run", "failures", "errors", "skipped"):
        assert hooked[key] == plain[key], (key, plain, hooked)
    assert hooked["traps"] > 0, hooked
    assert hooked["still_hooked"] == 0, hooked
