"""Shared fixtures: the real pydi binary, real target processes on the host
and in the namespaced forky root (CPython 3.13/3.14)."""
import json
import os
import re
import subprocess
import time

import jsonschema
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("PYDI_SOURCE", os.path.dirname(os.path.dirname(HERE)))
PYDI = os.environ.get("PYDI", os.path.join(SOURCE, "build", "pydi"))
HOST_PYTHON = "/usr/bin/python3"


def _load_schema(name):
    with open(os.path.join(SOURCE, "schemas", name)) as f:
        return json.load(f)


# Every line `pydi -j trace` prints is checked against the CLI schema, which
# refers to the snapshot schema. jsonschema 4.10 (Debian 12) has no
# `referencing`: resolve that $ref through a RefResolver store keyed by $id.
CLI_SCHEMA = _load_schema("cli-output.schema.json")
SNAPSHOT_SCHEMA = _load_schema("snapshot.schema.json")
jsonschema.Draft202012Validator.check_schema(CLI_SCHEMA)
jsonschema.Draft202012Validator.check_schema(SNAPSHOT_SCHEMA)
CLI_VALIDATOR = jsonschema.Draft202012Validator(
    CLI_SCHEMA, resolver=jsonschema.RefResolver.from_schema(
        CLI_SCHEMA, store={CLI_SCHEMA["$id"]: CLI_SCHEMA,
                           SNAPSHOT_SCHEMA["$id"]: SNAPSHOT_SCHEMA}))


def parse_cli_line(line):
    """One line of `pydi -j` output, parsed and validated."""
    obj = json.loads(line)
    errors = sorted(CLI_VALIDATOR.iter_errors(obj), key=str)
    assert not errors, f"schema errors in {line!r}: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    return obj


def line_markers(path):
    """{name: line} for every `# LINE:name` comment in a fixture file, so
    tests find lines by name instead of hard-coding numbers."""
    lines = {}
    with open(path) as f:
        for number, text in enumerate(f, 1):
            for name in re.findall(r"# LINE:(\w+)", text):
                lines[name] = number
    return lines


def report(line):
    """A result worth seeing even when the test passes (ctest hides passing
    output): scripts/test prints this file at the end."""
    print(line)
    path = os.environ.get("PYDI_TEST_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def run_pydi(*args, stdin=None, timeout=120):
    """Run pydi; return (exit code, stdout, stderr)."""
    proc = subprocess.run([PYDI, *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def pydi_json(*args, **kw):
    rc, out, err = run_pydi("-j", *args, **kw)
    assert rc == 0, f"pydi {args} exited {rc}: {err}{out}"
    return json.loads(out)


class Target:
    """A Python process under test. It prints one line (its handshake) when
    ready and exits when its stdin closes."""

    def __init__(self, argv, env=None, host_pid_of=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     env=env)
        self.handshake = self.proc.stdout.readline().strip()
        if not self.handshake:
            self.proc.kill()
            raise RuntimeError(f"target {argv} exited before its handshake")
        self.pid = host_pid_of(self.proc.pid) if host_pid_of else self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.proc.kill()
                self.proc.wait()


def child_pid(pid, timeout=10):
    """The single child of pid (unshare -f forks once)."""
    deadline = time.time() + timeout
    path = f"/proc/{pid}/task/{pid}/children"
    while time.time() < deadline:
        with open(path) as f:
            kids = f.read().split()
        if kids:
            return int(kids[0])
        time.sleep(0.02)
    raise RuntimeError(f"pid {pid} has no child")


def rootfs_path():
    """The forky root with python3.13/3.14, built once by scripts/rootfs."""
    proc = subprocess.run([os.path.join(SOURCE, "scripts", "rootfs")],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"scripts/rootfs failed: {proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def rootfs():
    return rootfs_path()


def spawn_host(script_path, *args, python=HOST_PYTHON, env=None):
    return Target([python, script_path, *args], env=env)


def spawn_in_rootfs(root, python, script_path, *args, env=None):
    """Run a script under the root's interpreter in its own mount and pid
    namespace (our container). The script is copied into the root's /tmp."""
    name = f"pydi-test-{os.getpid()}-{os.path.basename(script_path)}"
    with open(script_path) as src, open(os.path.join(root, "tmp", name), "w") as dst:
        dst.write(src.read())
    argv = ["unshare", "-mpf", f"--mount-proc={root}/proc", "chroot", root,
            python, f"/tmp/{name}", *args]
    target = Target(argv, env=env, host_pid_of=child_pid)
    # chroot execs the interpreter in place: wait for it to be Python.
    deadline = time.time() + 10
    while time.time() < deadline:
        if "python" in os.readlink(f"/proc/{target.pid}/exe"):
            break
        time.sleep(0.02)
    return target


ROOTFS_PYTHONS = ["python3.13", "python3.14"]
