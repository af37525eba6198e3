"""In-process hooking: every kind of code a probe hooks, and the scenarios
that hold the helper to its contract, run inside one interpreter.

    python hook_app.py HELPER_DIR [SCENARIO ...]

imports _pydi_helper from HELPER_DIR, starts it, and drives it through
dispatch() exactly as the agent's commands would (hook, unhook, hooks,
revert-all), with the native test aids: _gate (what the agent writes into
helper memory), _record (each call that passes a gate appends (slot, event,
line, value, code of the calling frame, thread id): what BPF would see) and
_trap_count. It prints one JSON object per scenario, {"name", "ok",
"failures", "info"}, then {"summary": ...}.

Lines that scenarios need carry a `# LINE:name` comment; they are found by
searching this file, never by number.
"""
import asyncio
import functools
import gc
import json
import os
import re
import statistics
import sys
import threading
import time
import traceback

HERE = os.path.abspath(__file__)
MOD = "hook_app"    # the script is addressable by its file's module name
ENTRY, RETURN, EXCEPTION, LINE = 1, 2, 3, 4
h = None            # _pydi_helper


def _markers():
    lines = {}
    with open(HERE) as f:
        for number, text in enumerate(f, 1):
            for name in re.findall(r"# LINE:(\w+)", text):
                lines[name] = number
    return lines


L = _markers()


# -- targets --

def add3(a, b, c):
    return a + b * c


def bench3(a, b, c):
    return a + b + c


class Shape:
    sides = 4

    def __init__(self, size):
        self.size = size

    def area(self):
        return self.size * self.size

    @classmethod
    def make(cls, size):
        return cls(size)

    @staticmethod
    def unit():
        return 1


def make_counter(start):
    count = [start]

    def bump(step):
        count[0] += step
        return count[0]
    return bump


def make_deep(base):
    def middle(k):
        def inner(x):
            return base + k + x  # LINE:deep_inner
        return inner
    return middle


async def fetch(x):
    await asyncio.sleep(0)
    doubled = x * 2  # LINE:fetch_after_await
    return doubled


async def handle(x):
    return await fetch(x) + 1


async def fetch_slowly():
    await asyncio.sleep(3600)


async def fetch_fails(x):
    await asyncio.sleep(0)
    raise KeyError(x)


def gen(n):
    for i in range(n):
        yield i
    return "done"


def delegate(n):
    result = yield from gen(n)
    return result


async def agen(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


scaled = functools.partial(add3, 10)
len_alias = len


def square(x):
    return x * x


def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def loop_sum(n):
    total = 0
    for i in range(n):  # LINE:loop_head
        total += i  # LINE:loop_body
    return total


class Ctx:
    def __init__(self, x):
        self.x = x

    def __enter__(self):
        if self.x % 17 == 16:
            raise OSError("enter", self.x)
        return self.x % 3

    def __exit__(self, kind, value, tb):
        # Swallows TypeErrors.
        return kind is TypeError


def risky(x):
    if x % 9 == 8:
        raise LookupError("risky", x)
    return x


def flow(x):
    total = 0
    try:
        if x == 14:
            return "early"  # runs the finally block first
        for i in range(x % 7):
            if i == 3:
                continue
            if i == 5:
                break
            total += risky(i + x)  # LINE:flow_loop
        with Ctx(x) as c:
            if x % 5 == 0:
                raise ValueError(x)
            if x % 4 == 1:
                raise TypeError(x)
            total += c
        while total > 40:
            total -= 7  # LINE:flow_while
    except ValueError:
        if x % 10 == 0:
            raise
        total = -1
    except ZeroDivisionError:
        return "zde"
    finally:
        total += 1
        if x == 13:
            total = "finally"
    try:
        if x % 11 == 0:
            total = total / (x % 11)
    except ZeroDivisionError as error:
        total = str(error)
    try:
        try:
            if x % 8 == 3:
                raise RuntimeError("inner", x)
        finally:
            total = (total, "f")
    except RuntimeError:
        total = ("caught", total)
    if x % 13 == 12:
        [1, 2][x]
    return total


def after_flow(x):
    return flow(x)


def worker_loop(stop, out):
    while not stop.is_set():  # LINE:worker_loop
        out.append(1)
        time.sleep(0.001)


def compute(values):
    doubled = [v * 2 for v in values]  # LINE:listcomp
    return sum(doubled)


# -- harness --

class Failed(Exception):
    pass


class Scenario:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.info = {}

    def check(self, condition, what):
        if not condition:
            self.failures.append(what)
        return condition

    def eq(self, got, want, what):
        return self.check(got == want, f"{what}: got {got!r}, want {want!r}")


def cmd(**command):
    return json.loads(h.dispatch(json.dumps(command)))


def hook(s, probe_id, slot, target, events=None, arm=True):
    command = {"cmd": "hook", "probe_id": probe_id, "slot": slot,
               "target": target}
    if events is not None:
        command["events"] = events
    reply = cmd(**command)
    if not reply.get("ok"):
        raise Failed(f"hook {target}: {reply}")
    if arm:
        h._gate(slot, True)
    return reply


def unhook(s, probe_id):
    reply = cmd(cmd="unhook", probe_id=probe_id)
    s.check(reply.get("ok") and reply.get("unhooked"),
            f"unhook {probe_id}: {reply}")
    return reply


def records():
    """[(slot, event, line, value)] since the last call; also checks each
    came from a frame running a hooked code object (kept in CODES)."""
    out = []
    for slot, event, line, value, code, tid in h._recorded():
        out.append((slot, event, line, value))
        FRAME_CODES.append((slot, event, id(code) if code is not None
                            else None, code, tid))
    return out


FRAME_CODES = []


def frame_codes():
    out = list(FRAME_CODES)
    del FRAME_CODES[:]
    return out


def code_ids(reply):
    return set(c["code_id"] for c in reply["codes"])


def check_frames(s, reply, what):
    """Every record came from a frame running the code the reply says runs
    the hook: what BPF reads through the thread state."""
    wanted = code_ids(reply)
    for slot, event, cid, code, _ in frame_codes():
        s.check(cid in wanted, f"{what}: event {event} of slot {slot} came "
                f"from frame code {code!r} ({cid}), not one of {wanted}")


SCENARIOS = []


def scenario(fn):
    SCENARIOS.append(fn)
    return fn


def monitoring_tool():
    if sys.version_info < (3, 12):
        return None
    for tool in (3, 4):
        if sys.monitoring.get_tool(tool) == "pydi":
            return tool
    return None


@scenario
def function(s):
    original = add3.__code__
    reply = hook(s, "f", 1, f"{MOD}:add3")
    s.eq(cmd(cmd="hello")["hooks_active"], True, "hello.hooks_active")
    code = reply["codes"][0]
    s.eq(code["orig_code_id"], id(original), "orig_code_id")
    if sys.version_info < (3, 12):
        s.check(code["code_id"] != id(original) and
                add3.__code__ is not original, "3.11 swaps in a new code")
        s.eq(code["code_id"], id(add3.__code__), "code_id is the new code")
        s.eq(code["functions_swapped"], 1, "functions_swapped")
    else:
        s.eq(code["code_id"], id(original), "3.12+ keeps the code")
        s.check(add3.__code__ is original, "3.12+ keeps __code__")
    s.eq(add3(1, 2, 3), 7, "result")
    s.eq(records(), [(1, ENTRY, 0, None), (1, RETURN, 0, 7)], "events")
    check_frames(s, reply, "add3")
    unhook(s, "f")
    s.check(add3.__code__ is original, "__code__ is the original again")
    s.eq(cmd(cmd="hello")["hooks_active"], False, "hello.hooks_active")
    add3(1, 2, 3)
    s.eq(records(), [], "no events after unhook")


@scenario
def method_classmethod_staticmethod(s):
    shape = Shape(3)
    bound = shape.area          # captured before hooking: still fires
    originals = (Shape.area.__code__, Shape.make.__code__,
                 Shape.unit.__code__)
    replies = [hook(s, "m", 1, f"{MOD}:Shape.area"),
               hook(s, "c", 2, f"{MOD}:Shape.make"),
               hook(s, "st", 3, f"{MOD}:Shape.unit")]
    s.eq(bound(), 9, "bound method")
    s.eq(Shape.area(Shape(2)), 4, "function through the class")
    made = Shape.make(5)
    s.eq(made.size, 5, "classmethod")
    s.eq(Shape.unit() + made.unit(), 2, "staticmethod")
    got = records()
    s.eq(got, [(1, ENTRY, 0, None), (1, RETURN, 0, 9),
               (1, ENTRY, 0, None), (1, RETURN, 0, 4),
               (2, ENTRY, 0, None), (2, RETURN, 0, made),
               (3, ENTRY, 0, None), (3, RETURN, 0, 1),
               (3, ENTRY, 0, None), (3, RETURN, 0, 1)], "events")
    wanted = set().union(*(code_ids(r) for r in replies))
    for slot, event, cid, code, _ in frame_codes():
        s.check(cid in wanted, f"slot {slot} fired from {code!r}")
    for probe in ("m", "c", "st"):
        unhook(s, probe)
    s.check((Shape.area.__code__, Shape.make.__code__, Shape.unit.__code__)
            == originals, "codes restored")


@scenario
def nested_closure(s):
    before = make_counter(10)
    original = before.__code__
    reply = hook(s, "n", 1, f"{MOD}:make_counter.<locals>.bump")
    code = reply["codes"][0]
    if sys.version_info < (3, 12):
        s.eq(code["functions_swapped"], 1, "the existing closure swapped")
        s.check(code.get("enclosing"), "the enclosing code was rewritten")
    after = make_counter(100)   # created from the rewritten enclosing code
    s.eq(before(1), 11, "existing closure")
    s.eq(after(5), 105, "closure made after hooking")
    s.eq(records(), [(1, ENTRY, 0, None), (1, RETURN, 0, 11),
                     (1, ENTRY, 0, None), (1, RETURN, 0, 105)], "events")
    check_frames(s, reply, "bump")
    unhook(s, "n")
    late = make_counter(0)
    for name, fn in (("before", before), ("after", after), ("late", late)):
        s.check(fn.__code__ is original, f"{name}: original code")
    s.check(all(c is not h._hook for c in make_counter.__code__.co_consts),
            "enclosing code restored")
    after(1)
    s.eq(records(), [], "no events after unhook")


@scenario
def enclosing_and_nested_together(s):
    original_outer = make_counter.__code__
    existing = make_counter(0)
    original_inner = existing.__code__
    hook(s, "o", 1, f"{MOD}:make_counter", events=["entry"])
    hook(s, "i", 2, f"{MOD}:make_counter.<locals>.bump", events=["return"])
    fresh = make_counter(7)
    s.eq(fresh(1) + existing(2), 8 + 2, "results")
    s.eq(records(), [(1, ENTRY, 0, None), (2, RETURN, 0, 8),
                     (2, RETURN, 0, 2)], "outer entry, inner returns")
    frame_codes()
    unhook(s, "o")
    make_counter(1)(1)
    s.eq(records(), [(2, RETURN, 0, 2)], "inner only")
    frame_codes()
    unhook(s, "i")
    s.check(make_counter.__code__ is original_outer, "outer restored")
    s.check(all(f.__code__ is original_inner
                for f in (existing, fresh, make_counter(3))),
            "inner restored")


@scenario
def nested_two_levels(s):
    middle = make_deep(1)
    inner_before = middle(2)
    original = inner_before.__code__
    hook(s, "d", 1, f"{MOD}:make_deep.<locals>.middle.<locals>.inner")
    hook(s, "dl", 2, f"{MOD}:make_deep.<locals>.middle.<locals>.inner"
         f"@{L['deep_inner']}")
    inner_new = make_deep(10)(20)   # both enclosing levels rewritten
    s.eq(inner_before(3) + inner_new(30), 6 + 60, "results")
    s.eq(records(), [(1, ENTRY, 0, None), (2, LINE, L["deep_inner"], None),
                     (1, RETURN, 0, 6),
                     (1, ENTRY, 0, None), (2, LINE, L["deep_inner"], None),
                     (1, RETURN, 0, 60)], "events")
    cmd(cmd="revert-all")
    s.check(inner_before.__code__ is original and
            inner_new.__code__ is original and
            make_deep(0)(0).__code__ is original, "restored everywhere")


@scenario
def coroutine_awaited(s):
    reply = hook(s, "a", 1, f"{MOD}:fetch")
    line = hook(s, "al", 2, f"{MOD}:fetch@{L['fetch_after_await']}")
    s.eq(asyncio.run(handle(5)), 11, "result")
    s.eq(records(), [(1, ENTRY, 0, None),
                     (2, LINE, L["fetch_after_await"], None),
                     (1, RETURN, 0, 10)], "entry once, line, return once")
    # The line probe regenerated fetch's code (3.11): the newest runs.
    check_frames(s, line, "fetch")
    s.check(reply["codes"][0]["orig_code_id"] ==
            line["codes"][0]["orig_code_id"], "one original")

    async def cancel_one():
        task = asyncio.ensure_future(fetch_slowly())
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
    hook(s, "ac", 3, f"{MOD}:fetch_slowly")
    hook(s, "af", 4, f"{MOD}:fetch_fails")
    s.eq(asyncio.run(cancel_one()), "cancelled", "cancel")
    s.eq(records(), [(3, ENTRY, 0, None)],
         "a cancelled coroutine is no exception event")
    try:
        asyncio.run(fetch_fails(7))
    except KeyError as error:
        raised = error
    got = records()
    s.eq([(a, b, c) for a, b, c, _ in got],
         [(4, ENTRY, 0), (4, EXCEPTION, 0)], "exception event")
    s.check(got and got[-1][3] is raised, "the exception object is passed")
    frame_codes()
    cmd(cmd="revert-all")


@scenario
def generator(s):
    original = gen.__code__
    reply = hook(s, "g", 1, f"{MOD}:gen")
    s.eq(list(gen(3)), [0, 1, 2], "values")
    s.eq(records(), [(1, ENTRY, 0, None), (1, RETURN, 0, "done")],
         "entry once, return once with the final value")
    check_frames(s, reply, "gen")
    s.eq(list(delegate(2)), [0, 1], "yield from")
    s.eq(records(), [(1, ENTRY, 0, None), (1, RETURN, 0, "done")],
         "through yield from")
    closed = gen(5)
    next(closed)
    closed.close()
    s.eq(records(), [(1, ENTRY, 0, None)],
         "closing is no exception event (GeneratorExit)")
    unhook(s, "g")
    s.check(gen.__code__ is original, "restored")


@scenario
def async_generator(s):
    hook(s, "ag", 1, f"{MOD}:agen")

    async def consume():
        return [i async for i in agen(3)]
    s.eq(asyncio.run(consume()), [0, 1, 2], "values")
    s.eq(records(), [(1, ENTRY, 0, None), (1, RETURN, 0, None)],
         "entry once, return once")
    frame_codes()
    unhook(s, "ag")


@scenario
def partial_map_thread_recursion(s):
    reply = hook(s, "p", 1, f"{MOD}:scaled")
    s.eq(reply["codes"][0]["qualname"], "add3", "a partial hooks its .func")
    s.eq(scaled(1, 2), 12, "partial")
    s.eq(records(), [(1, ENTRY, 0, None), (1, RETURN, 0, 12)], "partial")
    hook(s, "sq", 2, f"{MOD}:square")
    s.eq(list(map(square, range(4))), [0, 1, 4, 9], "map")
    s.eq(records(), [e for x in range(4) for e in
                     ((2, ENTRY, 0, None), (2, RETURN, 0, x * x))], "map")
    frame_codes()
    result = []
    worker = threading.Thread(target=lambda: result.append(add3(1, 1, 1)))
    worker.start()
    worker.join()
    s.eq(records(), [(1, ENTRY, 0, None), (1, RETURN, 0, 2)], "thread")
    tids = set(t for _, _, _, _, t in frame_codes())
    s.eq(tids, {worker.ident}, "fired on the worker thread")
    hook(s, "r", 3, f"{MOD}:fact")
    s.eq(fact(5), 120, "recursion")
    got = records()
    s.eq([e for _, e, _, _ in got], [ENTRY] * 5 + [RETURN] * 5, "recursion")
    s.eq([v for _, e, _, v in got if e == RETURN], [1, 2, 6, 24, 120],
         "return values, innermost first")
    frame_codes()
    cmd(cmd="revert-all")


def _outcome(fn, x):
    try:
        return ("ok", fn(x))
    except BaseException as error:
        return ("raised", type(error).__name__, error.args,
                _tb_lines(error))


def _tb_lines(error):
    return [line for line in traceback.format_exception(error)
            if "hook_app" not in line or "line" in line]


@scenario
def control_flow_identical(s):
    inputs = list(range(-20, 90))
    plain = [_outcome(after_flow, x) for x in inputs]
    original = flow.__code__
    reply = hook(s, "cf", 1, f"{MOD}:flow")
    hook(s, "cl", 2, f"{MOD}:flow@{L['flow_loop']}")
    hook(s, "cw", 3, f"{MOD}:flow@{L['flow_while']}")
    hook(s, "ce", 4, f"{MOD}:after_flow")
    hooked = [_outcome(after_flow, x) for x in inputs]
    s.eq(hooked, plain, "results, exceptions and tracebacks")
    got = records()
    raised = [x for x, o in zip(inputs, plain) if o[0] == "raised"]
    s.check(raised, "some inputs raise")
    exceptions = [v for slot, e, _, v in got if slot == 1 and e == EXCEPTION]
    s.eq(len(exceptions), len(raised), "one exception event per raise")
    s.eq(len([1 for slot, e, _, _ in got if slot == 4 and e == EXCEPTION]),
         len(raised), "exceptions passing through after_flow")
    s.eq(len([1 for slot, e, _, _ in got if slot == 1 and e == ENTRY]),
         len(inputs), "entries")
    s.eq(len([1 for slot, e, _, _ in got if slot == 1 and e == RETURN]),
         len(inputs) - len(raised), "returns")
    loop_hits = len([1 for slot, _, _, _ in got if slot == 2])
    s.info["flow_loop_hits"] = loop_hits
    s.check(loop_hits > 0, "loop line fired")
    for slot, event, cid, code, _ in frame_codes():
        if slot in (1, 2, 3):
            s.check(cid in code_ids(reply) or code.co_name == "flow",
                    f"frame {code!r}")
    cmd(cmd="revert-all")
    s.check(flow.__code__ is original, "restored")
    s.eq([_outcome(after_flow, x) for x in inputs], plain, "after revert")


@scenario
def line_in_loop(s):
    reply = hook(s, "lb", 1, f"{MOD}:loop_sum@{L['loop_body']}")
    s.eq(loop_sum(5), 10, "result")
    s.eq(records(), [(1, LINE, L["loop_body"], None)] * 5,
         "once per iteration")
    check_frames(s, reply, "loop_sum")
    file_target = f"{HERE}:{L['loop_head']}"
    head = hook(s, "lh", 2, file_target)
    s.eq(head["codes"][0]["qualname"], "loop_sum", "file:LINE resolves")
    loop_sum(3)
    got = records()
    s.eq(len([1 for r in got if r[0] == 1]), 3, "body")
    heads = len([1 for r in got if r[0] == 2])
    s.info["loop_head_hits_for_3"] = heads
    s.check(heads >= 3, "the for line fires every iteration")
    frame_codes()
    hook(s, "lc", 3, f"{MOD}:compute@{L['listcomp']}")
    s.eq(compute([1, 2]), 6, "comprehension")
    s.check(len([1 for r in records() if r[0] == 3]) >= 1,
            "a comprehension's line fires")
    frame_codes()
    if sys.version_info >= (3, 12):
        # Lines of a probed code that no probe wants answer DISABLE: the
        # second call costs one callback per probed line only.
        cmd(cmd="revert-all")
        hook(s, "ld", 4, f"{MOD}:loop_sum@{L['loop_body']}")
        loop_sum(5)
        before = h._callback_count()
        loop_sum(5)
        s.eq(h._callback_count() - before, 5, "callbacks on the 2nd call")
        hook(s, "ld2", 5, f"{MOD}:loop_sum@{L['loop_head']}")
        records()
        loop_sum(2)
        s.check(len([1 for r in records() if r[0] == 5]) >= 2,
                "a line added later fires (LINE re-armed)")
        frame_codes()
    cmd(cmd="revert-all")


@scenario
def function_and_line_probes_coexist(s):
    original = loop_sum.__code__
    first = hook(s, "fn", 1, f"{MOD}:loop_sum")
    second = hook(s, "ln", 2, f"{MOD}:loop_sum@{L['loop_body']}")
    if sys.version_info < (3, 12):
        s.eq([c["probe_id"] for c in second["changed"]], ["fn"],
             "the function probe's code changed")
        s.eq(second["changed"][0]["old_code_id"],
             first["codes"][0]["code_id"], "old code id")
    loop_sum(2)
    s.eq(records(), [(1, ENTRY, 0, None), (2, LINE, L["loop_body"], None),
                     (2, LINE, L["loop_body"], None), (1, RETURN, 0, 1)],
         "both")
    check_frames(s, second, "loop_sum")
    reply = unhook(s, "fn")
    loop_sum(2)
    s.eq(records(), [(2, LINE, L["loop_body"], None)] * 2, "line only")
    frame_codes()
    if sys.version_info < (3, 12):
        s.eq(reply["codes"][0]["restored"], False, "still hooked for ln")
        s.check(loop_sum.__code__ is not original, "still hooked")
    listing = cmd(cmd="hooks")
    s.eq([x["probe_id"] for x in listing["hooks"]], ["ln"], "hooks lists ln")
    s.eq(listing["hooks"][0]["codes"][0]["code_id"], id(loop_sum.__code__),
         "hooks gives the running code")
    reply = unhook(s, "ln")
    s.eq(reply["codes"][0]["restored"], True, "restored")
    s.check(loop_sum.__code__ is original, "original again")


@scenario
def gate(s):
    hook(s, "gt", 5, f"{MOD}:add3", arm=False)
    traps = h._trap_count()
    hits = h._gate_stats(5)[0]
    for _ in range(100):
        add3(1, 2, 3)
    s.eq(h._trap_count(), traps, "an unarmed gate never traps")
    # A hit is a call (its end is part of it), as probe list counts them.
    s.eq(h._gate_stats(5), (hits + 100, 0), "hits counted")
    h._gate(5, True, time.clock_gettime_ns(time.CLOCK_MONOTONIC) + 10**12)
    add3(1, 2, 3)
    # Rate-limited: the entry never traps; the return still does (BPF needs
    # it when it captured the entry, and drops it otherwise).
    s.eq(h._trap_count(), traps + 1, "rate-limited: the entry does not trap")
    s.eq(h._gate_stats(5), (hits + 101, 1), "skipped counted")
    h._gate(5, True, 0)
    add3(1, 2, 3)
    s.eq(h._trap_count(), traps + 3, "armed: traps")
    records()
    frame_codes()
    unhook(s, "gt")
    add3(1, 2, 3)
    s.eq(h._gate_stats(5)[0], hits + 102, "no hook, no hit")


@scenario
def stale_frames(s):
    started = gen(3)
    next(started)               # suspended on the original code
    stop = threading.Event()
    out = []
    worker = threading.Thread(target=worker_loop, args=(stop, out))
    worker.start()
    while not out:
        time.sleep(0.001)
    reply = hook(s, "sg", 1, f"{MOD}:gen")
    loop = hook(s, "sw", 2, f"{MOD}:worker_loop@{L['worker_loop']}")
    stop.set()
    worker.join()
    if sys.version_info < (3, 12):
        s.check(reply["codes"][0]["running_frames"] >= 1,
                f"suspended generator reported: {reply['codes'][0]}")
        s.check(reply["codes"][0]["warnings"], "a warning says so")
        s.eq(loop["codes"][0]["running_frames"], 1, "the worker's frame")
        s.eq(list(started), [1, 2], "the old frame goes on")
        s.eq(records(), [], "old frames keep the old code")
    else:
        list(started)
        s.eq([r for r in records() if r[0] == 1], [(1, RETURN, 0, "done")],
             "3.12+ instruments running frames too")
    hooked = gen(3)
    next(hooked)                # suspended on the hooked code
    records()
    unhook(s, "sg")
    s.eq(list(hooked), [1, 2], "a stale hooked frame finishes")
    s.eq(records(), [], "its hook is gated off")
    frame_codes()
    cmd(cmd="revert-all")


@scenario
def foreign_code_replacement(s):
    """Revert is compare-and-swap: a function whose __code__ something
    else replaced since is left as it is (3.11), with a warning."""
    original = add3.__code__
    hook(s, "fr", 1, f"{MOD}:add3")
    if sys.version_info < (3, 12):
        ours = add3.__code__
        foreign = (lambda a, b, c: ("foreign", a)).__code__
        add3.__code__ = foreign
        reply = unhook(s, "fr")
        s.check(add3.__code__ is foreign, "the foreign code stays")
        s.check(any("replaced by something else" in w
                    for w in reply["codes"][0]["warnings"]),
                f"a warning says so: {reply}")
        add3.__code__ = ours        # e.g. the other tool reverts to ours
        add3(1, 2, 3)
        s.eq(records(), [], "a stale hooked code is gated off")
        frame_codes()
        add3.__code__ = original
    else:
        unhook(s, "fr")
    s.check(add3.__code__ is original, "original")


@scenario
def agent_memory_layout(s):
    """What the agent reads and writes in helper memory (helper_abi.h):
    hooks_active, the gate array (armed by a plain memory write, as
    process_vm_writev does) and the hook's address."""
    import ctypes
    lib = ctypes.CDLL(h.__file__)

    class Gate(ctypes.Structure):
        _fields_ = [("armed", ctypes.c_uint32),
                    ("flags", ctypes.c_uint32),
                    ("next_allowed_ns", ctypes.c_uint64),
                    ("hits", ctypes.c_uint64), ("skipped", ctypes.c_uint64)]

    class State(ctypes.Structure):
        _fields_ = [("magic", ctypes.c_uint64), ("abi", ctypes.c_uint32),
                    ("status", ctypes.c_uint32), ("pid", ctypes.c_int32),
                    ("wake_fd", ctypes.c_int32), ("done_fd", ctypes.c_int32),
                    ("hooks_active", ctypes.c_uint32)] + [
            (n, ctypes.c_uint64) for n in (
                "cmd_seq", "reply_seq", "cmd_len", "reply_len",
                "lease_deadline_ns", "lease_expiries", "commands_run",
                "cmd_buf", "reply_buf", "gates", "hook_fn")]
    state = State.in_dll(lib, "pydi_helper_state")
    s.eq(state.magic, 0x706c656869647970, "magic")
    hook_fn = ctypes.cast(lib.pydi_hook_event, ctypes.c_void_p).value
    s.eq(state.hook_fn, hook_fn, "hook_fn is pydi_hook_event")
    gates = (Gate * h.MAX_GATES).from_address(state.gates)
    s.eq(state.hooks_active, 0, "no hooks")
    hook(s, "mem", 11, f"{MOD}:add3", arm=False)
    s.eq(state.hooks_active, 1, "hooks_active")
    traps = h._trap_count()
    add3(1, 2, 3)
    s.eq((gates[11].hits, h._trap_count()), (1, traps), "unarmed")
    gates[11].armed = 1             # the agent's write
    add3(1, 2, 3)
    s.eq((gates[11].hits, h._trap_count()), (2, traps + 2), "armed")
    records()
    frame_codes()
    unhook(s, "mem")
    s.eq((state.hooks_active, gates[11].armed), (0, 0),
         "unhook disarms and publishes")


@scenario
def errors(s):
    reply = cmd(cmd="hook", probe_id="e1", slot=1, target=f"{MOD}:len_alias")
    s.eq((reply["ok"], reply.get("error_cause")),
         (False, "METHOD_NOT_FOUND"), f"builtin: {reply}")
    s.check("no Python code" in reply.get("message", ""), reply)
    reply = cmd(cmd="hook", probe_id="e2", slot=1,
                target=f"{MOD}:add3@{L['loop_body']}")
    s.eq(reply.get("error_cause"), "LINE_NOT_EXECUTABLE", f"line: {reply}")
    reply = cmd(cmd="hook", probe_id="e3", slot=1, target=f"{MOD}:nope")
    s.eq(reply.get("error_cause"), "METHOD_NOT_FOUND", "missing name")
    reply = cmd(cmd="hook", probe_id="e4", slot=1, target=f"{MOD}:add3",
                events=["line"])
    s.eq(reply.get("error_cause"), "RUNTIME_ERROR", "line event, no line")
    reply = cmd(cmd="hook", probe_id="e5", slot=4096, target=f"{MOD}:add3")
    s.eq(reply.get("error_cause"), "RUNTIME_ERROR", "slot range")
    hook(s, "e6", 1, f"{MOD}:add3")
    reply = cmd(cmd="hook", probe_id="e7", slot=1, target=f"{MOD}:square")
    s.eq(reply.get("error_cause"), "RUNTIME_ERROR", "slot in use")
    again = hook(s, "e6", 1, f"{MOD}:square")
    s.eq(again["replaced"], True, "same probe_id replaces")
    s.check(all(c is not h._hook for c in add3.__code__.co_consts),
            "the replaced hook is gone")
    s.eq(cmd(cmd="unhook", probe_id="nope")["unhooked"], False, "unknown")
    cmd(cmd="revert-all")
    s.eq(cmd(cmd="hooks")["hooks"], [], "no hooks")


@scenario
def revert_all_exact(s):
    codes = [f.__code__ for f in (add3, gen, fetch, loop_sum, flow)]
    hook(s, "r1", 1, f"{MOD}:add3")
    hook(s, "r2", 2, f"{MOD}:gen")
    hook(s, "r3", 3, f"{MOD}:fetch@{L['fetch_after_await']}")
    hook(s, "r4", 4, f"{MOD}:loop_sum@{L['loop_body']}")
    hook(s, "r5", 5, f"{MOD}:flow", events=["exception"])
    tool = monitoring_tool()
    if sys.version_info >= (3, 12):
        s.check(tool in (3, 4), "a sys.monitoring tool id is in use")
        events = sys.monitoring.events
        s.eq(sys.monitoring.get_events(tool), events.PY_UNWIND,
             "PY_UNWIND is global while an exception probe exists")
        s.eq(sys.monitoring.get_local_events(tool, add3.__code__),
             events.PY_START | events.PY_RETURN, "local events")
    reply = cmd(cmd="revert-all")
    s.eq(reply, {"ok": True, "reverted": 5}, "revert-all")
    now = [f.__code__ for f in (add3, gen, fetch, loop_sum, flow)]
    s.check(all(a is b for a, b in zip(now, codes)), "every code restored")
    s.eq(cmd(cmd="hello")["hooks_active"], False, "hooks_active")
    if sys.version_info >= (3, 12):
        s.eq(monitoring_tool(), None, "the tool id is freed")
        s.eq(sys.monitoring.get_events(tool), 0, "no global events")
        for code in codes:
            s.eq(sys.monitoring.get_local_events(tool, code), 0,
                 f"no local events on {code.co_name}")
    s.eq(h._monitor_points(), [], "the native code table is empty")


@scenario
def benchmark(s):
    def per_call(fn):
        runs = []
        for _ in range(5):
            loops = 200000
            start = time.perf_counter_ns()
            for _ in range(loops):
                fn(1, 2, 3)
            runs.append((time.perf_counter_ns() - start) / loops)
        return statistics.median(runs)
    plain = per_call(bench3)
    hook(s, "b", 9, f"{MOD}:bench3", arm=False)
    hooked = per_call(bench3)
    unhook(s, "b")
    s.info.update(plain_ns=round(plain, 1),
                  hooked_disarmed_ns=round(hooked, 1),
                  overhead_ns=round(hooked - plain, 1))


def main():
    global h
    sys.path.insert(0, sys.argv[1])
    import _pydi_helper
    h = _pydi_helper
    h._start()
    h._record(True)
    wanted = set(sys.argv[2:])
    passed = 0
    for fn in SCENARIOS:
        if wanted and fn.__name__ not in wanted:
            continue
        s = Scenario(fn.__name__)
        try:
            fn(s)
        except Failed as error:
            s.failures.append(str(error))
        except Exception:
            s.failures.append(traceback.format_exc())
        leftover = cmd(cmd="hooks")
        if leftover["hooks"]:
            s.failures.append(f"hooks left: {leftover['hooks']}")
            cmd(cmd="revert-all")
        records()
        frame_codes()
        gc.collect()
        passed += not s.failures
        print(json.dumps({"name": s.name, "ok": not s.failures,
                          "failures": s.failures, "info": s.info},
                         default=repr), flush=True)
    print(json.dumps({"summary": {"passed": passed,
                                  "python": sys.version.split()[0]}}))


if __name__ == "__main__":
    main()
