"""A target for pydi's resolver: one stdlib-only module holding every kind of
thing a probe can name (functions, methods, class/static methods, nested and
twice-defined functions, coroutines, generators, partials, callable
instances, builtins, decorated functions, comprehensions) and every trap
resolution must not spring (module and metaclass __getattr__, properties,
a property-made __dict__).

Lines that tests need are marked with a `# LINE:name` comment on the line
(or, for a blank line, on the line above it): tests find them by searching
this file, never by number.

Run as a script it prints "ready" and waits for stdin to close: a target for
the injection tests. With PYDI_RESOLVE_COMMANDS=<json file> it instead
loads the helper's bootstrap (PYDI_BOOTSTRAP) the way the helper does and
prints one JSON reply per command; with PYDI_RESOLVE_ORACLE=1 it checks the
bootstrap's executable lines against the interpreter's own line events.
"""
import functools
import operator
import os
import sys

# Who asked a dynamic hook for what: resolution must leave this empty.
TRAPS = []

MODULE_CONSTANT = 42  # LINE:module_level


def __getattr__(name):
    # Module __getattr__ (PEP 562): pydi must never call it.
    TRAPS.append(("module __getattr__", name))
    raise AttributeError(name)


def handler(request):  # LINE:handler_def
    """Add up a request.  # LINE:handler_doc

    The docstring has no bytecode.
    """
    total = 0  # LINE:handler_first
    # a comment in the body  # LINE:handler_comment
    for item in request:  # LINE:handler_blank_above

        total += item  # LINE:handler_loop
    return total  # LINE:handler_return


def one_liner(x): return x + 1  # LINE:one_liner


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # LINE:wrapper_def
        return fn(*args, **kwargs)  # LINE:wrapper_body
    return wrapper


@logged  # LINE:decorated_decorator
def decorated(a,  # LINE:decorated_def
              b=2):
    c = a * b  # LINE:decorated_body
    return c


@functools.lru_cache(maxsize=None)
def cached(n):
    return n * 2  # LINE:cached_body


class Service:
    """A class with every kind of method."""

    greeting = "hi"

    def method(self, x):
        y = x + 1  # LINE:method_body
        return y

    @classmethod
    def cmethod(cls, x):
        return x * 3  # LINE:cmethod_body

    @staticmethod
    def smethod(x):
        return x - 1  # LINE:smethod_body

    @staticmethod
    @logged
    def logged_static(x):
        return x * 5  # LINE:logged_static_body

    async def amethod(self, x):
        return x  # LINE:amethod_body

    @property
    def prop(self):
        TRAPS.append(("property", "prop"))
        return 1

    @prop.setter
    def prop(self, value):
        self.greeting = value  # LINE:prop_setter_body

    @functools.cached_property
    def cached_prop(self):
        return self.greeting * 2  # LINE:cached_prop_body

    class Inner:
        def deep(self):
            return "deep"  # LINE:deep_body


def outer(n):
    base = n * 2  # LINE:outer_first

    def inner(m):  # LINE:inner_def
        z = m + base  # LINE:inner_body

        return z  # LINE:inner_return
    return inner(n)  # LINE:outer_return


def twice(flag):
    if flag:
        def inner():
            return "first"  # LINE:twice_first
    else:
        def inner():
            return "second"  # LINE:twice_second
    return inner()


def make_adder(n):
    def add(x):
        return x + n  # LINE:add_body
    return add


adder_one = make_adder(1)
adder_two = make_adder(2)


def comprehensions(items):
    squares = [x * x for x in items]  # LINE:listcomp_line
    evens = (
        x  # LINE:genexpr_body
        for x in items
        if x % 2 == 0
    )
    key = lambda pair: (  # LINE:lambda_line
        pair[1]  # LINE:lambda_body
    )
    tens = [
        x * 10  # LINE:listcomp_body
        for x in items
    ]
    return squares, list(evens), sorted([(1, 2), (0, 3)], key=key), tens


async def fetch(x):
    return x + 1  # LINE:fetch_body


def counter(n):
    i = 0  # LINE:counter_first
    while i < n:
        yield i  # LINE:counter_yield
        i += 1


async def ticker(n):
    for i in range(n):
        yield i  # LINE:ticker_yield


partial_py = functools.partial(handler, [1, 2])
partial_builtin = functools.partial(len)
partial_nested = functools.partial(partial_py)


class Greeter:
    def __call__(self, name):
        return "hello " + name  # LINE:greeter_call


greeter = Greeter()
getter = operator.itemgetter(1)
builtin_len = len
bound_method = Service().method
service = Service()


class Meta(type):
    def __getattr__(cls, name):
        TRAPS.append(("metaclass __getattr__", name))
        raise AttributeError(name)


class Guarded(metaclass=Meta):
    """Every attribute hook records the call; resolution must trigger none."""

    def real(self):
        return "real"  # LINE:guarded_real

    def __getattr__(self, name):
        TRAPS.append(("instance __getattr__", name))
        raise AttributeError(name)

    def __getattribute__(self, name):
        TRAPS.append(("__getattribute__", name))
        return object.__getattribute__(self, name)


guarded = Guarded()


class WeirdDict:
    """An instance whose __dict__ is a property: never read."""

    @property
    def __dict__(self):
        TRAPS.append(("__dict__ property", "__dict__"))
        return {"method": handler}


weird = WeirdDict()


class LazyModule(type(sys)):
    """A module subclass that records every attribute read (lazy-import
    libraries do this): resolution reads its __dict__ statically."""

    def __getattribute__(self, name):
        TRAPS.append(("lazy module __getattribute__", name))
        return type(sys).__getattribute__(self, name)

    def __getattr__(self, name):
        TRAPS.append(("lazy module __getattr__", name))
        raise AttributeError(name)


class NotAModule:
    """Something that is not a module, in sys.modules."""

    __file__ = property(lambda self: TRAPS.append(("not-a-module", "file")))

    def method(self):
        return "not a module"  # LINE:not_a_module_method

    def __getattr__(self, name):
        TRAPS.append(("not-a-module __getattr__", name))
        raise AttributeError(name)


lazy_module = LazyModule("pydi_lazy_module")
lazy_module.func = handler
sys.modules["pydi_lazy_module"] = lazy_module
sys.modules["pydi_not_a_module"] = NotAModule()
no_file_module = type(sys)("pydi_no_file")
no_file_module.__file__ = None
sys.modules["pydi_no_file"] = no_file_module

if os.environ.get("PYDI_RESOLVE_NEVER"):
    def never_defined():
        return "never"  # LINE:never_defined_body


def run_all():
    """Call everything above once (for the line-event oracle)."""
    handler([1, 2, 3])
    one_liner(1)
    decorated(3)
    cached(4)
    s = Service()
    s.method(1)
    Service.cmethod(2)
    Service.smethod(3)
    Service.logged_static(4)
    drive(s.amethod(5))
    Service.Inner().deep()
    outer(2)
    twice(True)
    twice(False)
    adder_one(1)
    adder_two(2)
    comprehensions([1, 2, 3, 4])
    drive(fetch(1))
    list(counter(3))
    agen = ticker(2)
    while True:
        try:
            drive(agen.__anext__())
        except StopAsyncIteration:
            break
    partial_py()
    greeter("you")
    Guarded().real()


def drive(awaitable):
    """Run a coroutine that never suspends, without an event loop."""
    try:
        awaitable.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the coroutine suspended")


# -- harness: in-process checks, used only by tests --

NATIVE_STAND_IN = object()


def load_bootstrap():
    """Load the helper's Python half exactly as the C side does: a fresh
    module, _native set first (the extension module; a stand-in here), then
    exec of the source."""
    import types
    with open(os.environ["PYDI_BOOTSTRAP"]) as f:
        source = f.read()
    boot = types.ModuleType("_pydi_boot")
    boot._native = NATIVE_STAND_IN
    exec(compile(source, "<pydi-bootstrap>", "exec"), boot.__dict__)
    return boot


HUGE_FUNCTIONS = 20000


def make_huge_module():
    """pydi_huge: HUGE_FUNCTIONS functions, f_i's body on line 2 * i + 2,
    file pydi_huge.py next to this one (it does not exist on disk)."""
    import types
    filename = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "pydi_huge.py")
    source = "".join(f"def f_{i}(x):\n    return x + {i}\n"
                     for i in range(HUGE_FUNCTIONS))
    module = types.ModuleType("pydi_huge")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    sys.modules["pydi_huge"] = module


def run_commands(path):
    import json
    __import__("types")  # the harness's own, loaded before the snapshot
    with open(path) as f:
        commands = json.load(f)
    make_huge_module()
    before = set(sys.modules)
    boot = load_bootstrap()
    stdout = sys.stdout
    import time
    for command in commands:
        text = command if isinstance(command, str) else json.dumps(command)
        start = time.perf_counter()
        reply = boot.dispatch(text)
        elapsed = time.perf_counter() - start
        if isinstance(command, dict) and command.get("timed"):
            reply = reply[:-1] + ', "elapsed_s": %.6f}' % elapsed
        stdout.write(reply + "\n")
    stdout.write(json.dumps({"harness": {
        "traps": TRAPS,
        "new_modules": sorted(set(sys.modules) - before),
        "native_kept": boot._native is NATIVE_STAND_IN,
    }}) + "\n")
    stdout.flush()


def oracle():
    """For every code object that runs during run_all() and a stdlib
    workload, compare the lines where the interpreter fires line events with
    the bootstrap's executable lines, restricted to the lines that ran."""
    import json
    boot = load_bootstrap()
    workload = stdlib_workload()
    mine = {id(c) for c in (oracle.__code__, record_lines.__code__)}
    fired, reached, codes = record_lines(lambda: (run_all(), workload()),
                                         mine)
    results = []
    for key, code in codes.items():
        executable = boot.executable_lines(code)
        ran = reached.get(key, set())
        prologue = prologue_lines(code)
        ran |= prologue
        got = fired.get(key, set())
        results.append({
            "qualname": code.co_qualname, "file": code.co_filename,
            "first_line": code.co_firstlineno,
            "fired": sorted(got), "reached": sorted(ran),
            "executable": sorted(executable),
        })
    sys.stdout.write(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3],
                                 "codes": results}) + "\n")


def prologue_lines(code):
    """Lines of the instructions every call runs before its first RESUME
    (and that RESUME): a call reaches them whether or not the interpreter
    reports them."""
    import opcode
    raw = code.co_code
    resume = opcode.opmap["RESUME"]
    end = 0
    for offset in range(0, len(raw), 2):
        if raw[offset] == resume:
            end = offset + 2
            break
    lines = set()
    for start, stop, line in code.co_lines():
        if line is not None and start < end:
            lines.add(line)
    return lines


def record_lines(work, skip):
    """Run work() with line and per-instruction events; return
    ({id: fired lines}, {id: lines of instructions that ran}, {id: code})."""
    fired, reached, codes = {}, {}, {}
    offsets = {}

    def line_of(code, offset):
        table = offsets.get(id(code))
        if table is None:
            table = offsets[id(code)] = {}
            for start, stop, line in code.co_lines():
                for o in range(start, stop, 2):
                    table[o] = line
        return table.get(offset)

    def note(code):
        if id(code) in skip:
            return False
        codes[id(code)] = code
        return True

    if sys.version_info >= (3, 12):
        mon = sys.monitoring
        tool = 3
        mon.use_tool_id(tool, "pydi-oracle")
        events = mon.events

        def on_line(code, line):
            if note(code):
                fired.setdefault(id(code), set()).add(line)

        def on_instruction(code, offset):
            if note(code):
                line = line_of(code, offset)
                if line is not None:
                    reached.setdefault(id(code), set()).add(line)

        def on_start(code, offset):
            note(code)

        mon.register_callback(tool, events.LINE, on_line)
        mon.register_callback(tool, events.INSTRUCTION, on_instruction)
        mon.register_callback(tool, events.PY_START, on_start)
        skip.update(id(f.__code__) for f in (on_line, on_instruction,
                                             on_start, line_of, note))
        mon.set_events(tool, events.LINE | events.INSTRUCTION |
                       events.PY_START)
        try:
            work()
        finally:
            mon.set_events(tool, 0)
            for event in (events.LINE, events.INSTRUCTION, events.PY_START):
                mon.register_callback(tool, event, None)
            mon.free_tool_id(tool)
    else:
        def local(frame, event, arg):
            code = frame.f_code
            if event == "line":
                fired.setdefault(id(code), set()).add(frame.f_lineno)
            elif event == "opcode":
                line = line_of(code, frame.f_lasti)
                if line is not None:
                    reached.setdefault(id(code), set()).add(line)
            return local

        def on_call(frame, event, arg):
            if not note(frame.f_code):
                return None
            frame.f_trace_opcodes = True
            return local

        skip.update(id(f.__code__) for f in (local, on_call, line_of, note))
        sys.settrace(on_call)
        try:
            work()
        finally:
            sys.settrace(None)
    return fired, reached, codes


def stdlib_workload():
    """Imports first (module code is not under test), then returns a
    function that exercises a few hundred stdlib functions."""
    import argparse
    import ast
    import asyncio
    import base64
    import calendar
    import collections
    import configparser
    import copy
    import dataclasses
    import difflib
    import email.utils
    import enum
    import fractions
    import html
    import inspect
    import io
    import ipaddress
    import json
    import pickle
    import pprint
    import random
    import re
    import shlex
    import statistics
    import string
    import textwrap
    import tokenize
    import urllib.parse

    source = inspect.getsource(handler) + inspect.getsource(Service)

    def work():
        json.loads(json.dumps({"a": [1, 2.5, None], "b": {"c": "d"}},
                              indent=2, sort_keys=True))
        textwrap.fill("lorem ipsum dolor sit amet " * 20, width=40)
        textwrap.dedent("    a\n    b\n")
        list(difflib.unified_diff(["a\n", "b\n"], ["a\n", "c\n"]))
        difflib.SequenceMatcher(None, "abcdef", "abdfeg").get_opcodes()
        difflib.get_close_matches("handlr", ["handler", "handle", "hand"])
        fractions.Fraction(3, 4) + fractions.Fraction("1/3")
        statistics.mean([1, 2, 3, 4])
        statistics.median([3, 1, 2])
        statistics.stdev([1.0, 2.0, 4.0])
        string.Template("$x and ${y}").substitute(x=1, y=2)
        string.Formatter().format("{0}-{x}", 1, x=2)
        pprint.pformat({"k%d" % i: list(range(i)) for i in range(12)})
        list(ipaddress.ip_network("10.0.0.0/29").hosts())
        shlex.split("a 'b c' \"d e\" f\\ g")
        urllib.parse.urlencode({"q": "a b", "n": 1})
        urllib.parse.urlsplit("https://u:p@example.com:8/p?q=1#f")
        urllib.parse.quote("a b/c")
        email.utils.parseaddr("Someone <someone@example.com>")
        email.utils.formatdate(0)
        html.unescape(html.escape("<a href='x'>&</a>"))
        base64.b64decode(base64.b64encode(b"pydi"))
        collections.Counter("abracadabra").most_common(2)
        collections.namedtuple("Point", "x y")(1, 2)._asdict()
        calendar.month(2024, 2)
        copy.deepcopy({"a": [1, {"b": (2, 3)}], "s": {1, 2}})
        pickle.loads(pickle._dumps({"a": [1, 2], "b": ("x", 1.5)}))

        @dataclasses.dataclass(order=True)
        class Item:
            name: str
            price: float = 0.0
        sorted([Item("b", 2), Item("a", 1)])
        dataclasses.asdict(Item("c", 3))

        class Color(enum.Enum):
            RED = 1
            GREEN = 2
        list(Color)
        Color(2).name

        inspect.signature(Service.method)
        inspect.getmembers(Service)
        tree = ast.parse(source)
        ast.dump(tree)
        ast.unparse(tree)
        list(tokenize.generate_tokens(io.StringIO(source).readline))
        re.compile(r"(?P<word>[a-z]+)\s+(\d{2,4})?|[^\W\d]+$", re.I)
        re.sub(r"(\w+)@(\w+)", r"\2 at \1", "me@here you@there")
        parser = argparse.ArgumentParser(prog="x")
        parser.add_argument("--count", type=int, default=1)
        parser.add_argument("names", nargs="*")
        parser.parse_args(["--count", "3", "a", "b"])
        config = configparser.ConfigParser()
        config.read_string("[s]\nk = v\nn = 2\n")
        config.getint("s", "n")
        rng = random.Random(4)
        rng.shuffle(list(range(20)))
        rng.choice("abc")
        rng.randint(1, 9)

        async def main():
            await asyncio.sleep(0)
            agen = ticker(3)
            return [i async for i in agen] + [await fetch(1)]
        asyncio.run(main())
    return work


if __name__ == "__main__":
    # Modules to load first, e.g. "resolve_app": a second copy of this file
    # under its own name, as a server's "module:app" import string makes
    # next to a script's __main__.
    for name in filter(None, os.environ.get("PYDI_RESOLVE_IMPORT",
                                            "").split(",")):
        __import__(name)
    if os.environ.get("PYDI_RESOLVE_COMMANDS"):
        run_commands(os.environ["PYDI_RESOLVE_COMMANDS"])
    elif os.environ.get("PYDI_RESOLVE_ORACLE"):
        oracle()
    else:
        print("ready", flush=True)
        sys.stdin.read()
