"""CPython's own unit tests, run with every function of the modules they
test hooked at every point (entry, return, exception, every executable
line), gates armed, against a plain run.

    python hook_stdlib_tests.py HELPER_DIR BOOTSTRAP hook|plain TEST MODULE...

Loads the bootstrap the way the helper does and hooks through its backend
(the same code the hook command runs, without resolving names one by one).
Prints one JSON object: tests run, failures, errors, skips, traps; and, for
hook, how many functions still held hooked code after removal (must be 0).
"""
import gc
import importlib
import json
import os
import sys
import types
import unittest


def main():
    helper_dir, bootstrap, mode, test_name, *module_names = sys.argv[1:]
    sys.path.insert(0, helper_dir)
    import _pydi_helper as native
    boot = types.ModuleType("_pydi_boot")
    boot._native = native
    with open(bootstrap) as f:
        exec(compile(f.read(), "<pydi-bootstrap>", "exec"), boot.__dict__)
    for name in module_names:
        importlib.import_module(name)
    tests = importlib.import_module(test_name)
    files = set(os.path.abspath(sys.modules[n].__file__)
                for n in module_names)
    codes, parents = {}, {}
    for obj in gc.get_objects():
        if type(obj) is types.FunctionType:
            code = obj.__code__
            if os.path.abspath(code.co_filename) in files:
                codes[id(code)] = code
    for code in list(codes.values()):
        for child, parent in boot._nested_codes(code):
            parents[id(child)] = parent
            codes[id(child)] = child
    result = {"mode": mode, "codes": len(codes)}
    backend = probe = None
    if mode == "hook":
        backend = boot._backend()
        native._monitor_config(
            sys.monitoring.DISABLE if sys.version_info >= (3, 12) else None,
            boot._skip_exception_types())
        probe = boot._Probe("stress", 7, test_name, ["entry"], None)
        targets = []
        for code in codes.values():
            points = [(7, 1, 0), (7, 2, 0), (7, 3, 0)]
            points += [(8, 4, line) for line in boot.executable_lines(code)]
            chain = backend.chain(code, parents)
            targets.append((chain[0], chain, points))
        probe.codes = [t[0] for t in targets]
        probe.points = [(7, 1, 0)]
        backend.add(probe, targets)
        native._gate(7, True)
        native._gate(8, True)
    with open(os.devnull, "w") as devnull:
        run = unittest.TextTestRunner(stream=devnull, verbosity=0).run(
            unittest.defaultTestLoader.loadTestsFromModule(tests))
    result.update(run=run.testsRun, failures=len(run.failures),
                  errors=len(run.errors), skipped=len(run.skipped),
                  traps=native._trap_count(),
                  problems=[f"{t}: {tb[-1500:]}"
                            for t, tb in (run.failures + run.errors)[:3]])
    if mode == "hook":
        backend.remove(probe)
        result["still_hooked"] = len([
            f for f in gc.get_objects() if type(f) is types.FunctionType
            and any(c is native._hook for c in f.__code__.co_consts)])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
