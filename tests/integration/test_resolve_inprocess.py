"""The helper's Python half (userspace-rebind/bootstrap.py), in process.

Until the helper is injectable, the fixture app (targets/resolve_app.py)
loads the bootstrap itself, exactly as the C side will (a fresh module
_pydi_boot, exec of the source), runs a list of commands and prints the
replies. It runs as a real __main__ (`python resolve_app.py`, `python -m`),
on the host's 3.11, pyenv's 3.12 when present, and 3.13/3.14 in the forky
root. A second check holds the bootstrap's executable lines against the
interpreter's own line events (settrace on 3.11, sys.monitoring on 3.12+).
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

APP = os.path.join(HERE, "targets", "resolve_app.py")
BOOTSTRAP = os.path.join(SOURCE, "userspace-rebind", "bootstrap.py")
PYENV_312 = os.path.expanduser("~/.pyenv/versions/3.12.1/bin/python3.12")

# Modules the bootstrap may load on demand (the harness has json already).
ALLOWED_NEW_MODULES = {"opcode", "_opcode", "_opcode_metadata", "gc"}

# An ordinary imported module (its body has returned): pydi_a/util.py and
# pydi_b/util.py in the package mode.
UTIL_SOURCE = """\
import functools
import os

LEVEL = 1  # line 4: module level


def helper():
    return "util"  # line 8


@functools.lru_cache(maxsize=None)  # line 11: decorator
def cached_helper(x):
    return x  # line 13


if os.environ.get("PYDI_RESOLVE_NEVER"):
    def never_defined():
        return "never"  # line 18
"""
UTIL_LINES = {"module_level": 4, "helper": 8, "decorator": 11,
              "cached_body": 13, "never_defined": 18}


def _markers():
    lines = {}
    with open(APP) as f:
        for number, text in enumerate(f, 1):
            for name in re.findall(r"# LINE:(\w+)", text):
                lines[name] = number
    return lines


L = _markers()
BLANK_IN_HANDLER = L["handler_blank_above"] + 1
BLANK_IN_INNER = L["inner_body"] + 1


class Interpreter:
    """A Python to run the fixture under: host or inside the forky root."""

    def __init__(self, name, version, python, root=None):
        self.name = name
        self.version = version          # (major, minor)
        self.python = python            # path as seen where it runs
        self.root = root                # chroot directory, or None

    def workdir(self):
        """(directory on the host, the same directory as the target sees
        it) holding the app, the bootstrap and helper packages."""
        if self.root:
            inside = f"/tmp/pydi-resolve-{os.getpid()}-{self.name}"
            host = self.root + inside
            shutil.rmtree(host, ignore_errors=True)
        else:
            host = tempfile.mkdtemp(prefix="pydi-resolve-")
            inside = host
        os.makedirs(host, exist_ok=True)
        shutil.copy(APP, host)
        shutil.copy(BOOTSTRAP, host)
        for package in ("pydi_fixture", "pydi_a", "pydi_b"):
            os.makedirs(os.path.join(host, package))
            open(os.path.join(host, package, "__init__.py"), "w").close()
        shutil.copy(APP, os.path.join(host, "pydi_fixture"))
        for package in ("pydi_a", "pydi_b"):
            with open(os.path.join(host, package, "util.py"), "w") as f:
                f.write(UTIL_SOURCE)
        return host, inside

    def run(self, args, env, timeout=300):
        argv = [self.python, *args]
        if self.root:
            argv = [shutil.which("chroot") or "/usr/sbin/chroot", self.root,
                    *argv]
        full_env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
        full_env.update(env)
        proc = subprocess.run(argv, capture_output=True, text=True,
                              env=full_env, timeout=timeout)
        assert proc.returncode == 0, (
            f"{argv} exited {proc.returncode}: {proc.stderr[-3000:]}")
        return proc.stdout


def _interpreters():
    found = [pytest.param("3.11", id="3.11")]
    found.append(pytest.param("3.12", id="3.12"))
    found.append(pytest.param("3.13", id="3.13"))
    found.append(pytest.param("3.14", id="3.14"))
    return found


@functools.lru_cache(maxsize=None)
def interpreter(name):
    if name == "3.11":
        return Interpreter(name, (3, 11), HOST_PYTHON)
    if name == "3.12":
        if not os.access(PYENV_312, os.X_OK):
            pytest.skip(f"no CPython 3.12 here ({PYENV_312} missing)")
        return Interpreter(name, (3, 12), PYENV_312)
    root = rootfs_path()
    python = f"/usr/bin/python{name}"
    if not os.access(root + python, os.X_OK):
        pytest.skip(f"{python} missing in {root}")
    return Interpreter(name, tuple(int(p) for p in name.split(".")), python,
                       root)


# -- running commands in the app --

MODES = {
    # name: (argv after the interpreter, extra env, module name of the app)
    "script": (["{dir}/resolve_app.py"], {}, "resolve_app"),
    "script+self": (["{dir}/resolve_app.py"],
                    {"PYDI_RESOLVE_IMPORT": "resolve_app"}, "resolve_app"),
    "module": (["-m", "resolve_app"], {"PYTHONPATH": "{dir}"}, "resolve_app"),
    "package": (["-m", "pydi_fixture.resolve_app"],
                {"PYTHONPATH": "{dir}",
                 "PYDI_RESOLVE_IMPORT": "pydi_a.util,pydi_b.util"},
                "pydi_fixture.resolve_app"),
}


def run_commands(interp, mode, commands):
    """Replies to commands (list), plus the harness's own report."""
    host, inside = interp.workdir()
    commands = [_placeholders(c, inside) for c in commands]
    try:
        with open(os.path.join(host, "commands.json"), "w") as f:
            json.dump(commands, f)
        args, env, _ = MODES[mode]
        args = [a.format(dir=inside) for a in args]
        env = {k: v.format(dir=inside) for k, v in env.items()}
        env["PYDI_BOOTSTRAP"] = f"{inside}/bootstrap.py"
        env["PYDI_RESOLVE_COMMANDS"] = f"{inside}/commands.json"
        out = interp.run(args, env)
    finally:
        shutil.rmtree(host, ignore_errors=True)
    lines = out.splitlines()
    # Nothing but replies on stdout: the helper never prints.
    parsed = [json.loads(line) for line in lines]
    assert len(parsed) == len(commands) + 1, out[-3000:]
    harness = parsed[-1]["harness"]
    return parsed[:-1], harness, inside


def _placeholders(command, inside):
    """{app} / {dir}: the app's path and directory as the target sees them."""
    if isinstance(command, dict) and "target" in command:
        command = dict(command)
        command["target"] = command["target"].replace(
            "{app}", f"{inside}/resolve_app.py").replace("{dir}", inside)
    return command


def _t(target, **extra):
    return dict({"cmd": "resolve", "target": target}, **extra)


# Each case: (id, command, check(reply, ctx)). ctx: version, app path.
CASES = []


def case(name, command):
    def register(check):
        CASES.append((name, command, check))
        return check
    return register


def error(reply, cause, *words):
    assert reply["ok"] is False, reply
    assert reply["error_cause"] == cause, reply
    for word in words:
        assert word in reply["message"], (word, reply["message"])


def only_code(reply):
    assert reply["ok"] is True, reply
    assert len(reply["codes"]) == 1, reply["codes"]
    return reply["codes"][0]


def line_code(reply):
    assert reply["ok"] is True, reply
    codes = {c["code_id"]: c for c in reply["codes"]}
    assert reply["line_code_ids"][0] == reply["line_code_id"]
    return codes[reply["line_code_id"]]


# commands

@case("hello", {"cmd": "hello"})
def _(r, ctx):
    assert r["ok"] is True and r["helper_version"] == "0.1.0"
    assert r["python"].startswith("%d.%d." % ctx["version"])
    assert isinstance(r["pid"], int) and r["hooks_active"] is False
    assert r["main_module"] == "resolve_app"


@case("revert_all", {"cmd": "revert-all"})
def _(r, ctx):
    assert r == {"ok": True, "reverted": 0}


@case("unknown_command", {"cmd": "frobnicate"})
def _(r, ctx):
    error(r, "RUNTIME_ERROR", "frobnicate")


@case("malformed_json", "{not json")
def _(r, ctx):
    error(r, "RUNTIME_ERROR", "JSON")


@case("not_an_object", "[1, 2]")
def _(r, ctx):
    error(r, "RUNTIME_ERROR")


@case("resolve_without_target", {"cmd": "resolve"})
def _(r, ctx):
    error(r, "RUNTIME_ERROR", "target")


@case("bad_target_file_name", _t("resolve_app.py:handler"))
def _(r, ctx):
    error(r, "RUNTIME_ERROR", "module:qualname")


@case("bad_target_empty_qualname", _t("resolve_app:"))
def _(r, ctx):
    error(r, "RUNTIME_ERROR", "bad target")


@case("bad_target_line", _t("resolve_app:handler@x"))
def _(r, ctx):
    error(r, "RUNTIME_ERROR", "line number")


# kinds

@case("function", _t("resolve_app:handler"))
def _(r, ctx):
    code = only_code(r)
    assert r["kind"] == "function" and r["module"] == "resolve_app"
    assert r["module_object"] == "__main__" and r["object"] == "handler"
    assert r["line"] is None and r["line_code_id"] is None
    assert code["qualname"] == "handler" and code["name"] == "handler"
    assert code["file"].endswith("resolve_app.py")
    assert code["first_line"] == L["handler_def"]
    assert [f["qualname"] for f in code["functions"]] == ["handler"]
    assert code["functions"][0]["module"] == "__main__"
    lines = set(code["lines"])
    assert {L["handler_first"], L["handler_blank_above"], L["handler_loop"],
            L["handler_return"]} <= lines
    assert not {L["handler_def"], L["handler_doc"], L["handler_comment"],
                BLANK_IN_HANDLER} & lines


@case("main_alias", _t("__main__:handler"))
def _(r, ctx):
    assert only_code(r)["qualname"] == "handler"
    assert r["module_object"] == "__main__"


@case("method", _t("resolve_app:Service.method"))
def _(r, ctx):
    assert r["kind"] == "method"
    assert only_code(r)["qualname"] == "Service.method"


@case("classmethod", _t("resolve_app:Service.cmethod"))
def _(r, ctx):
    assert r["kind"] == "classmethod"
    assert only_code(r)["qualname"] == "Service.cmethod"


@case("staticmethod", _t("resolve_app:Service.smethod"))
def _(r, ctx):
    assert r["kind"] == "staticmethod"
    assert only_code(r)["qualname"] == "Service.smethod"


@case("async_method", _t("resolve_app:Service.amethod"))
def _(r, ctx):
    assert r["kind"] == "method"
    assert only_code(r)["code_kind"] == "coroutine_function"


@case("nested_class_method", _t("resolve_app:Service.Inner.deep"))
def _(r, ctx):
    assert r["kind"] == "method"
    assert only_code(r)["qualname"] == "Service.Inner.deep"


@case("wrapped_staticmethod", _t("resolve_app:Service.logged_static"))
def _(r, ctx):
    assert r["kind"] == "staticmethod" and r["wrapped_available"] is True
    assert only_code(r)["qualname"] == "logged.<locals>.wrapper"


@case("wrapped_staticmethod_followed",
      _t("resolve_app:Service.logged_static", follow_wrapped=True))
def _(r, ctx):
    assert r["kind"] == "staticmethod" and "wrapped_available" not in r
    assert only_code(r)["qualname"] == "Service.logged_static"


@case("decorated", _t("resolve_app:decorated"))
def _(r, ctx):
    assert r["kind"] == "function" and r["wrapped_available"] is True
    code = only_code(r)
    assert code["qualname"] == "logged.<locals>.wrapper"
    # The wrapper's code is shared by every function `logged` decorates.
    assert len(code["functions"]) == 2


@case("decorated_followed", _t("resolve_app:decorated", follow_wrapped=True))
def _(r, ctx):
    code = only_code(r)
    assert code["qualname"] == "decorated"
    assert code["first_line"] == L["decorated_decorator"]
    assert L["decorated_body"] in code["lines"]
    assert L["decorated_decorator"] not in code["lines"]
    assert L["decorated_def"] not in code["lines"]


@case("lru_cache", _t("resolve_app:cached"))
def _(r, ctx):
    assert r["ok"] and r["kind"] == "builtin" and r["codes"] == []
    assert r["hookable"] is False and r["wrapped_available"] is True
    assert "follow_wrapped" in r["message"]


@case("lru_cache_followed", _t("resolve_app:cached", follow_wrapped=True))
def _(r, ctx):
    assert only_code(r)["qualname"] == "cached"


@case("nested_function", _t("resolve_app:outer.<locals>.inner"))
def _(r, ctx):
    code = only_code(r)
    assert r["kind"] == "function" and code["qualname"] == "outer.<locals>.inner"
    # outer never ran here: no function object yet, the code is still hookable.
    assert code["functions"] == []
    assert code["parent_code_id"] is not None
    assert L["inner_body"] in code["lines"] and BLANK_IN_INNER not in code["lines"]


@case("overloaded", _t("resolve_app:twice.<locals>.inner"))
def _(r, ctx):
    error(r, "OVERLOADED_METHODS", str(L["twice_first"] - 1),
          str(L["twice_second"] - 1))


@case("overloaded_picked_by_line",
      _t(f"resolve_app:twice.<locals>.inner@{L['twice_second']}"))
def _(r, ctx):
    assert line_code(r)["first_line"] == L["twice_second"] - 1


@case("closures_share_code", _t("resolve_app:make_adder.<locals>.add"))
def _(r, ctx):
    code = only_code(r)
    assert len(code["functions"]) == 2
    assert {f["qualname"] for f in code["functions"]} == {
        "make_adder.<locals>.add"}


@case("coroutine_function", _t("resolve_app:fetch"))
def _(r, ctx):
    assert r["kind"] == "coroutine_function"


@case("generator", _t("resolve_app:counter"))
def _(r, ctx):
    assert r["kind"] == "generator"
    assert L["counter_first"] in only_code(r)["lines"]


@case("async_generator", _t("resolve_app:ticker"))
def _(r, ctx):
    assert r["kind"] == "async_generator"


@case("partial", _t("resolve_app:partial_py"))
def _(r, ctx):
    assert r["kind"] == "partial" and only_code(r)["qualname"] == "handler"


@case("partial_of_partial", _t("resolve_app:partial_nested"))
def _(r, ctx):
    assert r["kind"] == "partial" and only_code(r)["qualname"] == "handler"


@case("partial_of_builtin", _t("resolve_app:partial_builtin"))
def _(r, ctx):
    assert r["ok"] and r["kind"] == "partial" and r["codes"] == []
    assert r["hookable"] is False and "builtin" in r["message"]


@case("callable_instance", _t("resolve_app:greeter"))
def _(r, ctx):
    assert r["kind"] == "callable_instance"
    assert only_code(r)["qualname"] == "Greeter.__call__"


@case("c_callable_instance", _t("resolve_app:getter"))
def _(r, ctx):
    assert r["ok"] and r["kind"] == "builtin" and r["codes"] == []
    assert "itemgetter" in r["message"]


@case("builtin", _t("resolve_app:builtin_len"))
def _(r, ctx):
    assert r["ok"] and r["kind"] == "builtin" and r["codes"] == []


@case("bound_method", _t("resolve_app:bound_method"))
def _(r, ctx):
    assert r["kind"] == "method"
    assert only_code(r)["qualname"] == "Service.method"


@case("method_through_instance", _t("resolve_app:service.method"))
def _(r, ctx):
    assert r["kind"] == "method"
    assert only_code(r)["qualname"] == "Service.method"


@case("property", _t("resolve_app:Service.prop"))
def _(r, ctx):
    assert r["ok"] and r["kind"] == "property"
    # getter and setter: two codes
    assert [c["qualname"] for c in r["codes"]] == ["Service.prop"] * 2


@case("cached_property", _t("resolve_app:Service.cached_prop"))
def _(r, ctx):
    assert r["kind"] == "property"
    assert only_code(r)["qualname"] == "Service.cached_prop"


@case("line_in_property_setter",
      _t(f"resolve_app:Service.prop@{L['prop_setter_body']}"))
def _(r, ctx):
    code = line_code(r)
    assert code["qualname"] == "Service.prop"
    assert code["first_line"] == L["prop_setter_body"] - 2
    assert r["line_code_ids"] == [code["code_id"]]


@case("metaclass_class_method", _t("resolve_app:Guarded.real"))
def _(r, ctx):
    assert r["kind"] == "method"


@case("instance_with_getattribute", _t("resolve_app:guarded.real"))
def _(r, ctx):
    assert r["kind"] == "method"


# errors

@case("module_not_loaded", _t("colorsys:hls_to_rgb"))
def _(r, ctx):
    error(r, "FILE_NOT_FOUND", "not loaded", "never imports")


@case("name_missing_close_names", _t("resolve_app:handlr"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "'handlr'", "resolve_app", "handler",
          "__getattr__")


@case("metaclass_getattr_not_called", _t("resolve_app:Guarded.missing"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "class resolve_app.Guarded", "__getattr__")


@case("instance_getattr_not_called", _t("resolve_app:guarded.nothing"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "Guarded", "__getattr__")


@case("property_dict_not_read", _t("resolve_app:weird.method"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "WeirdDict")


@case("class_is_not_a_function", _t("resolve_app:Service"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "is a class", "Service.__init__")


@case("constant_is_not_a_function", _t("resolve_app:MODULE_CONSTANT"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "not callable")


@case("missing_in_nested_class", _t("resolve_app:Service.Inner.nope"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "Service.Inner", "'nope'")


@case("missing_local", _t("resolve_app:outer.<locals>.innr"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "inner")


# odd sys.modules entries, a huge module

@case("module_subclass_with_getattribute", _t("pydi_lazy_module:func"))
def _(r, ctx):
    assert only_code(r)["qualname"] == "handler"
    assert r["module_object"] == "pydi_lazy_module"


@case("lazy_module_missing_name", _t("pydi_lazy_module:nothing"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "pydi_lazy_module", "__getattr__")


@case("not_a_module_in_sys_modules", _t("pydi_not_a_module:method"))
def _(r, ctx):
    assert r["kind"] == "method"
    assert only_code(r)["qualname"] == "NotAModule.method"


@case("module_with_file_none", _t("pydi_no_file:x"))
def _(r, ctx):
    error(r, "METHOD_NOT_FOUND", "pydi_no_file")


@case("huge_module_qualname", _t("pydi_huge:f_19999", timed=True))
def _(r, ctx):
    assert only_code(r)["first_line"] == 2 * 19999 + 1
    assert r["elapsed_s"] < 2.0, r["elapsed_s"]


@case("huge_module_file_line", _t("pydi_huge.py:%d" % (2 * 12345 + 2),
                                   timed=True))
def _(r, ctx):
    assert line_code(r)["qualname"] == "f_12345"
    assert r["elapsed_s"] < 5.0, r["elapsed_s"]


@case("huge_module_file_line_without_code",
      _t("pydi_huge.py:%d" % (2 * 20000 + 5), timed=True))
def _(r, ctx):
    # past the last function; the file does not exist on disk
    error(r, "LINE_NOT_EXECUTABLE", f"nearest: {2 * 19999 + 2}")
    assert r["elapsed_s"] < 10.0, r["elapsed_s"]


# lines of a qualname

@case("line", _t(f"resolve_app:handler@{L['handler_loop']}"))
def _(r, ctx):
    code = line_code(r)
    assert code["qualname"] == "handler" and code["role"] == "target"
    assert r["line"] == L["handler_loop"]


@case("line_def", _t(f"resolve_app:handler@{L['handler_def']}"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "def line", f"nearest: {L['handler_first']}")


@case("line_docstring", _t(f"resolve_app:handler@{L['handler_doc']}"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "docstring")


@case("line_comment", _t(f"resolve_app:handler@{L['handler_comment']}"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "comment",
          f"nearest: {L['handler_first']}, {L['handler_blank_above']}")


@case("line_blank", _t(f"resolve_app:handler@{BLANK_IN_HANDLER}"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "blank",
          f"line {BLANK_IN_HANDLER} has no code in resolve_app.handler",
          f"nearest: {L['handler_blank_above']}, {L['handler_loop']}")


@case("line_outside", _t(f"resolve_app:handler@{L['handler_return'] + 6}"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "outside", f"nearest: {L['handler_return']}")


@case("line_decorator",
      _t(f"resolve_app:decorated@{L['decorated_decorator']}",
         follow_wrapped=True))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "decorator",
          f"nearest: {L['decorated_body']}")


@case("line_signature",
      _t(f"resolve_app:decorated@{L['decorated_def'] + 1}",
         follow_wrapped=True))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "signature")


@case("line_of_wrapped_needs_follow",
      _t(f"resolve_app:decorated@{L['decorated_body']}"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "outside")


@case("line_in_nested_def", _t(f"resolve_app:outer@{L['inner_body']}"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "outer.<locals>.inner",
          f"probe resolve_app:outer.<locals>.inner@{L['inner_body']}",
          f"nearest: {L['inner_def']}, {L['outer_return']}")


@case("line_of_nested_def_statement", _t(f"resolve_app:outer@{L['inner_def']}"))
def _(r, ctx):
    code = line_code(r)
    assert code["qualname"] == "outer" and code["role"] == "target"


@case("line_in_nested", _t(f"resolve_app:outer.<locals>.inner@{L['inner_body']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "outer.<locals>.inner"


@case("line_blank_in_nested",
      _t(f"resolve_app:outer.<locals>.inner@{BLANK_IN_INNER}"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "blank",
          f"nearest: {L['inner_body']}, {L['inner_return']}")


@case("line_in_lambda", _t(f"resolve_app:comprehensions@{L['lambda_body']}"))
def _(r, ctx):
    code = line_code(r)
    assert code["name"] == "<lambda>" and code["role"] == "line"
    outer = [c for c in r["codes"] if c["role"] == "target"]
    assert [c["qualname"] for c in outer] == ["comprehensions"]
    assert code["parent_code_id"] == outer[0]["code_id"]


@case("line_in_genexpr", _t(f"resolve_app:comprehensions@{L['genexpr_body']}"))
def _(r, ctx):
    assert line_code(r)["name"] == "<genexpr>"


@case("line_in_listcomp",
      _t(f"resolve_app:comprehensions@{L['listcomp_body']}"))
def _(r, ctx):
    # 3.12 inlines list comprehensions (PEP 709).
    want = "<listcomp>" if ctx["version"] < (3, 12) else "comprehensions"
    assert line_code(r)["name"] == want


@case("line_with_comprehension_prefers_function",
      _t(f"resolve_app:comprehensions@{L['listcomp_line']}"))
def _(r, ctx):
    assert line_code(r)["name"] == "comprehensions"


@case("line_lambda_statement",
      _t(f"resolve_app:comprehensions@{L['lambda_line']}"))
def _(r, ctx):
    assert line_code(r)["name"] == "comprehensions"


@case("line_one_liner", _t(f"resolve_app:one_liner@{L['one_liner']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "one_liner"


@case("line_generator", _t(f"resolve_app:counter@{L['counter_yield']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "counter"


@case("line_async_generator", _t(f"resolve_app:ticker@{L['ticker_yield']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "ticker"


@case("line_coroutine", _t(f"resolve_app:fetch@{L['fetch_body']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "fetch"


@case("line_classmethod", _t(f"resolve_app:Service.cmethod@{L['cmethod_body']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "Service.cmethod"


@case("line_partial", _t(f"resolve_app:partial_py@{L['handler_loop']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "handler"


@case("line_callable_instance",
      _t(f"resolve_app:greeter@{L['greeter_call']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "Greeter.__call__"


@case("line_partial_of_builtin", _t("resolve_app:partial_builtin@3"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "no Python code")


@case("line_c_callable_instance", _t("resolve_app:getter@3"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "no Python code")


@case("line_builtin", _t("resolve_app:builtin_len@3"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "no Python code")


# file targets

@case("file_line", _t(f"resolve_app.py:{L['handler_loop']}"))
def _(r, ctx):
    code = line_code(r)
    assert code["qualname"] == "handler" and r["object"] == "handler"
    assert r["module_object"] == "__main__" and r["module"] == "resolve_app"
    assert r["kind"] == "function"


@case("file_absolute_path", _t("{app}:" + str(L["inner_body"])))
def _(r, ctx):
    assert line_code(r)["qualname"] == "outer.<locals>.inner"


@case("file_lambda", _t(f"resolve_app.py:{L['lambda_body']}"))
def _(r, ctx):
    assert line_code(r)["name"] == "<lambda>"
    assert r["object"] == "comprehensions"


@case("file_nested_class", _t(f"resolve_app.py:{L['deep_body']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "Service.Inner.deep"


@case("file_through_wrapper", _t(f"resolve_app.py:{L['logged_static_body']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "Service.logged_static"


@case("file_through_lru_cache", _t(f"resolve_app.py:{L['cached_body']}"))
def _(r, ctx):
    assert line_code(r)["qualname"] == "cached"


@case("file_twice_defined", _t(f"resolve_app.py:{L['twice_first']}"))
def _(r, ctx):
    assert line_code(r)["first_line"] == L["twice_first"] - 1


@case("file_closure_functions", _t(f"resolve_app.py:{L['add_body']}"))
def _(r, ctx):
    assert len(line_code(r)["functions"]) == 2


@case("file_module_level_of_running_main",
      _t(f"resolve_app.py:{L['module_level']}"))
def _(r, ctx):
    # The script's module body is still running (blocked at the bottom of
    # the file), so its code is live: resolvable, with a warning.
    code = line_code(r)
    assert code["name"] == "<module>" and r["kind"] == "module"
    assert "still running" in r["warning"]


@case("file_function_not_yet_defined_in_running_main",
      _t(f"resolve_app.py:{L['never_defined_body']}"))
def _(r, ctx):
    # Its code sits in the running module body's constants: hookable code
    # without a function object.
    code = line_code(r)
    assert code["qualname"] == "never_defined" and code["functions"] == []
    assert "warning" not in r


@case("file_comment", _t(f"resolve_app.py:{L['handler_comment']}"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "comment",
          f"nearest: {L['handler_first']}, {L['handler_blank_above']}")


@case("file_past_end", _t("resolve_app.py:99999"))
def _(r, ctx):
    error(r, "LINE_NOT_EXECUTABLE", "past the end")


@case("file_not_loaded", _t("nope/missing.py:3"))
def _(r, ctx):
    error(r, "FILE_NOT_FOUND", "no loaded module", "never imports")


@case("file_suffix_on_component_boundary", _t("esolve_app.py:3"))
def _(r, ctx):
    error(r, "FILE_NOT_FOUND", "'esolve_app.py'", "no loaded module")



@functools.lru_cache(maxsize=None)
def script_replies(name):
    """All CASES run once per interpreter in `python resolve_app.py`."""
    interp = interpreter(name)
    replies, harness, _ = run_commands(interp, "script",
                                       [c for _, c, _ in CASES])
    return interp, replies, harness


@pytest.mark.parametrize("name,command,check", CASES,
                         ids=[c[0] for c in CASES])
@pytest.mark.parametrize("python", _interpreters())
def test_command(python, name, command, check):
    interp, replies, _ = script_replies(python)
    reply = replies[[c[0] for c in CASES].index(name)]
    check(reply, {"version": interp.version})


@pytest.mark.parametrize("python", _interpreters())
def test_resolution_runs_no_app_code_and_imports_nothing(python):
    interp, replies, harness = script_replies(python)
    # Module/metaclass/instance __getattr__, __getattribute__, properties
    # and a property-made __dict__ all record calls: none may have run.
    assert harness["traps"] == []
    new = set(harness["new_modules"])
    assert "colorsys" not in new
    assert new <= ALLOWED_NEW_MODULES, new - ALLOWED_NEW_MODULES
    assert harness["native_kept"] is True
    report(f"resolve in process on Python {replies[0]['python']}: "
           f"{len(CASES)} commands, no app code run, modules loaded on "
           f"demand: {sorted(new) or 'none'}")


@pytest.mark.parametrize("python", _interpreters())
def test_second_copy_of_main_is_resolved_too(python):
    """`python app.py` that is also imported as `app` (a server's import
    string): both copies' code is returned, nothing is imported again."""
    interp = interpreter(python)
    replies, harness, _ = run_commands(interp, "script+self", [
        _t("resolve_app:handler"),
        _t("__main__:handler"),
        _t(f"resolve_app.py:{L['handler_loop']}"),
        _t(f"resolve_app:handler@{L['handler_loop']}"),
    ])
    both, main_only, by_file, by_line = replies
    assert both["module_objects"] == ["resolve_app", "__main__"]
    assert both["module_object"] == "resolve_app"
    ids = {c["code_id"] for c in both["codes"]}
    assert len(ids) == 2
    assert {c["functions"][0]["module"] for c in both["codes"]} == {
        "resolve_app", "__main__"}
    assert main_only["module_objects"] == ["__main__"]
    assert main_only["codes"][0]["code_id"] in ids
    assert set(by_file["line_code_ids"]) == ids
    assert set(by_line["line_code_ids"]) == ids
    assert harness["traps"] == []


@pytest.mark.parametrize("python", _interpreters())
def test_main_run_with_dash_m(python):
    interp = interpreter(python)
    replies, _, _ = run_commands(interp, "module", [
        {"cmd": "hello"},
        _t("resolve_app:Service.method"),
        _t(f"resolve_app.py:{L['method_body']}"),
    ])
    hello, method, by_file = replies
    assert hello["main_module"] == "resolve_app"
    assert method["module_object"] == "__main__"
    assert method["codes"][0]["qualname"] == "Service.method"
    assert line_code(by_file)["qualname"] == "Service.method"


@pytest.mark.parametrize("python", _interpreters())
def test_main_run_as_package_module(python):
    interp = interpreter(python)
    replies, harness, _ = run_commands(interp, "package", [
        {"cmd": "hello"},
        _t("pydi_fixture.resolve_app:Service.method"),
        _t("resolve_app:Service.method"),
        _t("util.py:%d" % UTIL_LINES["helper"]),
        _t("pydi_a/util.py:%d" % UTIL_LINES["helper"]),
        _t("{dir}/pydi_b/util.py:%d" % UTIL_LINES["helper"]),
        _t("pydi_fixture/resolve_app.py:%d" % L["handler_loop"]),
        _t("pydi_a/util.py:%d" % UTIL_LINES["module_level"]),
        _t("pydi_a/util.py:%d" % UTIL_LINES["decorator"]),
        _t("pydi_a/util.py:%d" % UTIL_LINES["never_defined"]),
        _t("pydi_a.util:cached_helper"),
        _t("pydi_a.util:cached_helper@%d" % UTIL_LINES["cached_body"],
           follow_wrapped=True),
    ])
    hello, method, stem, ambiguous, util_a, util_b, by_file = replies[:7]
    module_level, decorator, never, cached, cached_followed = replies[7:]
    assert hello["main_module"] == "pydi_fixture.resolve_app"
    assert method["module_object"] == "__main__"
    assert method["module"] == "pydi_fixture.resolve_app"
    error(stem, "FILE_NOT_FOUND", "'resolve_app'", "pydi_fixture.resolve_app")
    error(ambiguous, "FILE_NOT_FOUND", "ambiguous", "pydi_a", "pydi_b")
    assert line_code(util_a)["file"].endswith("pydi_a/util.py")
    assert util_a["module_object"] == "pydi_a.util"
    assert line_code(util_b)["file"].endswith("pydi_b/util.py")
    assert line_code(by_file)["qualname"] == "handler"
    error(module_level, "LINE_NOT_EXECUTABLE", "runs only at import",
          f"nearest: {UTIL_LINES['helper']}")
    error(decorator, "LINE_NOT_EXECUTABLE", "decorator",
          f"nearest: {UTIL_LINES['helper']}, {UTIL_LINES['cached_body']}")
    error(never, "LINE_NOT_EXECUTABLE", "'never_defined'", "not defined",
          f"nearest: {UTIL_LINES['cached_body']}")
    assert cached["kind"] == "builtin" and cached["wrapped_available"]
    assert line_code(cached_followed)["qualname"] == "cached_helper"
    assert harness["traps"] == []


# -- the executable-line oracle --

@pytest.mark.parametrize("python", _interpreters())
def test_executable_lines_match_line_events(python):
    """For every code object that ran (the app's functions and a stdlib
    workload): the lines where the interpreter fired a line event are
    exactly the bootstrap's executable lines among the lines that ran.
    'Ran' counts every executed instruction plus the prologue every call
    runs (up to the first RESUME), so a def or decorator line that the
    bootstrap wrongly called executable would fail here."""
    interp = interpreter(python)
    host, inside = interp.workdir()
    try:
        out = interp.run([f"{inside}/resolve_app.py"], {
            "PYDI_BOOTSTRAP": f"{inside}/bootstrap.py",
            "PYDI_RESOLVE_ORACLE": "1"}, timeout=600)
    finally:
        shutil.rmtree(host, ignore_errors=True)
    result = json.loads(out.splitlines()[-1])
    mismatches = []
    app_codes = 0
    app_names = set()
    for code in result["codes"]:
        fired = set(code["fired"])
        reached = set(code["reached"])
        executable = set(code["executable"])
        if code["file"].endswith("resolve_app.py"):
            app_codes += 1
            app_names.add(code["qualname"])
        if fired != executable & reached or not fired <= reached:
            mismatches.append({
                "code": f"{code['file']}:{code['first_line']} "
                        f"{code['qualname']}",
                "fired_not_executable": sorted(fired - executable),
                "executable_reached_not_fired":
                    sorted((executable & reached) - fired)})
    report(f"executable lines vs line events on Python {result['python']}: "
           f"{len(result['codes'])} code objects ({app_codes} of the app), "
           f"{len(mismatches)} mismatches")
    assert not mismatches, mismatches[:10]
    assert len(result["codes"]) > 300
    for qualname in ("handler", "one_liner", "decorated", "Service.method",
                     "outer.<locals>.inner", "comprehensions",
                     "comprehensions.<locals>.<lambda>",
                     "comprehensions.<locals>.<genexpr>", "counter",
                     "ticker", "fetch", "Greeter.__call__",
                     "logged.<locals>.wrapper"):
        assert qualname in app_names, qualname
