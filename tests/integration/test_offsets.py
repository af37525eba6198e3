"""The struct offsets pydi computes for a live interpreter (built-in table on
3.11/3.12, _Py_DebugOffsets on 3.13+) checked field by field by a probe
running inside that same interpreter (offsets_probe.py)."""
import json
import os
import subprocess

import pytest

from conftest import (HERE, ROOTFS_PYTHONS, pydi_json, report, spawn_host,
                      spawn_in_rootfs)

PROBE = os.path.join(HERE, "offsets_probe.py")
IDLE = os.path.join(HERE, "targets", "idle.py")
PYENV = "/root/.pyenv/versions"


def pyenv_python(version):
    path = f"{PYENV}/{version}/bin/python{version.rsplit('.', 1)[0]}"
    if not os.path.exists(path):
        pytest.skip(f"pyenv CPython {version} not present on this machine ({path})")
    return path


def run_probe(argv_prefix, offsets):
    with open(PROBE) as f:
        source = f.read()
    proc = subprocess.run([*argv_prefix, "-", json.dumps(offsets)], input=source,
                          capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout)
    failed = [c for c in result["checks"] if not c["ok"]]
    report(f"offsets probe on Python {result['python']} ({offsets['source']}): "
           f"{len(result['checks'])} checks, {len(failed)} failed")
    assert proc.returncode == 0 and not failed, failed


@pytest.mark.parametrize("python", ["/usr/bin/python3", "3.12.1", "3.13.0"])
def test_offsets_match_host_interpreter(python):
    if not python.startswith("/"):
        python = pyenv_python(python)
    target = spawn_host(IDLE, python=python)
    try:
        offsets = pydi_json("proc", "offsets", str(target.pid))
    finally:
        target.stop()
    run_probe([python], offsets)


@pytest.mark.parametrize("python", ROOTFS_PYTHONS)
def test_offsets_match_namespaced_interpreter(rootfs, python):
    target = spawn_in_rootfs(rootfs, f"/usr/bin/{python}", IDLE)
    try:
        offsets = pydi_json("proc", "offsets", str(target.pid))
        assert offsets["source"] == "debug_offsets"
    finally:
        target.stop()
    run_probe(["chroot", rootfs, f"/usr/bin/{python}"], offsets)
