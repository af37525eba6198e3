"""The 3.11 bytecode rewriter against every code object of the stdlib.

    python hook_sweep.py HELPER_DIR BOOTSTRAP

loads the bootstrap the way the helper does (a fresh module, _native set)
and, for every code object compiled from the stdlib's sources, builds the
hooked copy with every hook point (entry, return, two exception probes, a
line probe on every executable line) -- which the rewriter verifies itself
-- and the identity copy (no points), which must equal the original. Prints
one JSON summary.
"""
import json
import os
import sys
import time
import types


def main():
    sys.path.insert(0, sys.argv[1])
    import _pydi_helper
    boot = types.ModuleType("_pydi_boot")
    boot._native = _pydi_helper
    with open(sys.argv[2]) as f:
        exec(compile(f.read(), "<pydi-bootstrap>", "exec"), boot.__dict__)
    lib = os.path.dirname(os.__file__)
    summary = {"codes": 0, "files": 0, "sites": 0, "failures": [],
               "identity_mismatches": [], "lines_without_site": []}
    start = time.time()
    for root, dirs, files in os.walk(lib):
        dirs[:] = [d for d in dirs if d not in ("site-packages",
                                                "dist-packages")]
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            try:
                with open(path, encoding="utf-8") as f:
                    top = compile(f.read(), path, "exec")
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            summary["files"] += 1
            stack = [top]
            while stack:
                code = stack.pop()
                stack.extend(c for c in code.co_consts
                             if type(c) is types.CodeType)
                summary["codes"] += 1
                check(boot, code, path, summary)
    summary["seconds"] = round(time.time() - start, 1)
    for key in ("failures", "identity_mismatches", "lines_without_site"):
        summary[key + "_count"] = len(summary[key])
        summary[key] = summary[key][:20]
    print(json.dumps(summary))


def check(boot, code, path, summary):
    where = f"{path}:{code.co_firstlineno} {code.co_qualname}"
    lines = boot.executable_lines(code)
    points = [(5, 1, 0), (5, 2, 0), (5, 3, 0), (6, 3, 0)]
    points += [(7, 4, line) for line in lines]
    try:
        hooked, sites = boot._rewrite311(code, points, {})
        same, _ = boot._rewrite311(code, [], {})
    except boot._Fail as fail:
        summary["failures"].append(f"{where}: {fail.message}")
        return
    summary["sites"] += sum(sites.values())
    for line in lines:
        if not sites.get((4, line)):
            summary["lines_without_site"].append(f"{where} line {line}")
    if (same.co_code != code.co_code
            or same.co_exceptiontable != code.co_exceptiontable
            or list(same.co_positions()) != list(code.co_positions())
            or same.co_stacksize != code.co_stacksize):
        summary["identity_mismatches"].append(where)


if __name__ == "__main__":
    main()
