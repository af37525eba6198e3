"""Drives the helper in process for test_routes_inprocess.py:

    python routes_driver.py HELPER_DIR FIXTURE TARGET...

imports _pydi_helper from HELPER_DIR and the fixture module (a routes_*.py
app next to this file), then for each target prints one JSON line
{"target", "resolve": reply, "hook": reply, "unhook": reply}: resolve, hook
on slot 0, unhook -- the commands the agent sends. A last line,
target "(instance values)", names the frameworks' objects whose attributes
were inline values before the commands and are not after them."""
import gc
import importlib
import json
import os
import sys
import warnings

FRAMEWORKS = ("fastapi", "starlette", "aiohttp", "flask", "werkzeug", "django")
MANAGED_DICT = 1 << 4  # Py_TPFLAGS_MANAGED_DICT


def inline_objects():
    """The frameworks' live instances whose attributes are still inline
    values. On 3.11, gc's traversal of such an instance yields its attribute
    values; once its __dict__ exists, the dict and the type alone."""
    found = []
    for obj in gc.get_objects():
        t = type(obj)
        if (not t.__flags__ & MANAGED_DICT
                or str(t.__module__).split(".")[0] not in FRAMEWORKS):
            continue
        refs = gc.get_referents(obj)
        if not (len(refs) == 2 and any(type(r) is dict for r in refs)):
            found.append(obj)
    return found


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

    inline = inline_objects()

    for target in targets:
        record = {"target": target, "resolve": call(cmd="resolve",
                                                    target=target)}
        record["hook"] = call(cmd="hook", target=target, probe_id="p",
                              slot=0)
        record["unhook"] = call(cmd="unhook", probe_id="p")
        print(json.dumps(record), flush=True)
    still = set(map(id, inline_objects()))
    print(json.dumps({"target": "(instance values)", "checked": len(inline),
                      "materialized": sorted(
                          f"{type(o).__module__}.{type(o).__qualname__}"
                          for o in inline if id(o) not in still)}), flush=True)


if __name__ == "__main__":
    main()
