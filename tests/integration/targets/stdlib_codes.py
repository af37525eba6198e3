"""Target for the line-table cross-check: import every stdlib module that
imports cleanly, collect every code object reachable from live functions
(nested code in co_consts too), write what the interpreter itself says about
each (co_lines() and names) to the JSON file named by argv[1], print a
handshake, and wait for stdin to close."""
import gc
import io
import json
import os
import pkgutil
import sys
import types
import contextlib

# Modules with import side effects (open a browser, print, start a GUI or a
# REPL, run tests).
SKIP = {"antigravity", "this", "idlelib", "turtledemo", "tkinter", "turtle",
        "test", "lib2to3.tests", "ensurepip", "venv"}


def skipped(name):
    parts = name.split(".")
    if parts[-1] == "__main__" or name == "__main__":
        return True
    return any(".".join(parts[:i]) in SKIP for i in range(1, len(parts) + 1))


def import_quietly(name):
    try:
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            __import__(name)
        return True
    except BaseException:  # noqa: any failure means "does not import cleanly"
        return False


def import_stdlib():
    imported = 0
    for top in sorted(sys.stdlib_module_names):
        if skipped(top) or not import_quietly(top):
            continue
        imported += 1
        mod = sys.modules.get(top)
        path = getattr(mod, "__path__", None)
        if not path:
            continue
        for info in pkgutil.walk_packages(path, top + ".", onerror=lambda n: None):
            if not skipped(info.name) and import_quietly(info.name):
                imported += 1
    return imported


def collect_codes():
    seen = {}
    stack = [o.__code__ for o in gc.get_objects()
             if isinstance(o, types.FunctionType)]
    while stack:
        code = stack.pop()
        if id(code) in seen:
            continue
        seen[id(code)] = code
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return seen


def describe(code):
    return {
        "qualname": code.co_qualname,
        "filename": code.co_filename,
        "first_line": code.co_firstlineno,
        "argcount": code.co_argcount,
        "names": sorted(set(code.co_varnames + code.co_cellvars + code.co_freevars)),
        "co_lines": [[s, e, l] for s, e, l in code.co_lines()],
    }


def main():
    modules = import_stdlib()
    codes = collect_codes()
    out = {"python": sys.version.split()[0], "modules": modules,
           "codes": {hex(addr): describe(code) for addr, code in codes.items()}}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f)
    print("ready", flush=True)
    sys.stdin.read()
    # Keep the code objects alive until the check is done.
    return codes


if __name__ == "__main__":
    main()
