"""Cross-check pydi's code-object reader and line-table decoder against the
interpreter itself: every code object reachable from the whole importable
stdlib, read out of the live process, must match code.co_lines()."""
import json
import os
import tempfile

import pytest

from conftest import (HERE, ROOTFS_PYTHONS, report, run_pydi, spawn_host,
                      spawn_in_rootfs)

SCRIPT = os.path.join(HERE, "targets", "stdlib_codes.py")


def cross_check(target, expected_path):
    with open(expected_path) as f:
        expected = json.load(f)
    addrs = list(expected["codes"])
    rc, out, err = run_pydi("-j", "code", "show", "-p", str(target.pid), "-",
                            stdin="\n".join(addrs) + "\n", timeout=600)
    assert rc == 0, f"pydi code show failed ({rc}): {err[-2000:]} {out[-2000:]}"
    got = {}
    for line in out.splitlines():
        obj = json.loads(line)
        got[obj["address"]] = obj
    mismatches = []
    for addr, want in expected["codes"].items():
        have = got.get(addr)
        if have is None:
            mismatches.append((addr, "missing"))
            continue
        names = sorted(set(l["name"] for l in have["localsplus"]))
        for field, value in (("qualname", have["qualname"]),
                             ("filename", have["filename"]),
                             ("first_line", have["first_line"]),
                             ("argcount", have["argcount"]),
                             ("names", names),
                             ("co_lines", have["co_lines"])):
            if value != want[field]:
                mismatches.append((addr, want["qualname"], field))
    report(f"line-table cross-check on Python {expected['python']}: "
          f"{expected['modules']} modules imported, {len(addrs)} code objects "
          f"compared, {len(mismatches)} mismatches")
    assert not mismatches, mismatches[:20]
    assert len(addrs) > 10000, "too few code objects: the import sweep failed"


def test_linetable_matches_co_lines_on_host_python():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "codes.json")
        target = spawn_host(SCRIPT, out)
        try:
            cross_check(target, out)
        finally:
            target.stop()


@pytest.mark.parametrize("python", ROOTFS_PYTHONS)
def test_linetable_matches_co_lines_in_namespaced_root(rootfs, python):
    name = f"codes-{python}-{os.getpid()}.json"
    target = spawn_in_rootfs(rootfs, f"/usr/bin/{python}", SCRIPT, f"/tmp/{name}")
    try:
        cross_check(target, os.path.join(rootfs, "tmp", name))
    finally:
        target.stop()
        os.unlink(os.path.join(rootfs, "tmp", name))
