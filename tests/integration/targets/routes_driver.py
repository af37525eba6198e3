"""Drives the helper in process for test_routes_inprocess.py:

    python routes_driver.py HELPER_DIR FIXTURE TARGET...

imports _pydi_helper from HELPER_DIR and the fixture module (a routes_*.py
app next to this file), then for each target prints one JSON line
{"target", "resolve": reply, "hook": reply, "unhook": reply}: resolve, hook
on slot 0, unhook -- the commands the agent sends."""
import importlib
import json
import os
import sys
import warnings


def main():
    helper_dir, fixture, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
    sys.path.insert(0, helper_dir)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    warnings.simplefilter("ignore")
    importlib.import_module(fixture)
    import _pydi_helper as h
    h._start()

    def call(**command):
        return json.loads(h.dispatch(json.dumps(command)))

    for target in targets:
        record = {"target": target, "resolve": call(cmd="resolve",
                                                    target=target)}
        record["hook"] = call(cmd="hook", target=target, probe_id="p",
                              slot=0)
        record["unhook"] = call(cmd="unhook", probe_id="p")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
