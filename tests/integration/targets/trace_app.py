"""A target for `pydi trace` (stdlib only, so it runs under any interpreter):
every kind of function a probe can name, called continuously so snapshots
arrive quickly:

- a driver thread calls the plain functions, methods, closures, the
  generator, the partial, map() and the raising function every TICK;
- an asyncio loop (its own thread) awaits `fetch` through `handler`;
- a worker thread calls `worker_job`, which nothing else calls.

Lines that tests need are marked with a `# LINE:name` comment on the line
(for a blank line, on the line above it): tests find them by searching this
file, never by number.

Prints "ready" once everything runs. Then reads commands from stdin, one
per line, and answers each with one JSON line:
  state   id() of the probed functions' __code__ and of the closure's code
          in make_adder's co_consts (which a 3.11 hook rewrites), the
          sys.monitoring tools, global events and local events on those
          codes (3.12+), how many ticks each loop has done (the app
          keeps serving) and, once pydi's helper is loaded, how many
          hook calls went on to its trapped function (BPF's uprobe).
Exits when stdin closes.
"""
import asyncio
import functools
import json
import sys
import threading
import time

TICK = 0.01
TICKS = {"driver": 0, "async": 0, "worker": 0}


def plain(a, b):
    return a * 10 + b  # LINE:plain_body


def compute(a, b):
    s = a + b
    p = a * b  # LINE:compute_mid
    return s + p


def loop_sum(n):
    total = 0
    for i in range(n):
        total += i  # LINE:loop_body
    return total


def blank_and_comment(x):
    y = x + 1  # LINE:blank_above

    # a comment line  # LINE:comment
    return y  # LINE:blank_and_comment_return


class Calc:
    factor = 7

    def __init__(self, base):
        self.base = base

    def method(self, x):
        return x + self.base

    @classmethod
    def cm(cls, x):
        return x * cls.factor

    @staticmethod
    def sm(a, b):
        return a - b


def make_adder(n):
    def adder(x):
        return x + n
    return adder


def gen(n):
    for i in range(n):
        yield i
    return f"gen-done-{n}"


def scale(factor, x):
    return factor * x


scaled = functools.partial(scale, 3)
builtin_partial = functools.partial(max, 0)
builtin_alias = abs


def square(x):
    return x * x


def fails(x):
    raise ValueError(f"bad value {x}")


def take(text, items):
    return len(text) + len(items)


def login(user, password):
    return user.upper()


def hot(i):
    return i + 1


def edges(a, b, c, d, e, t, f, n):
    """Values BPF may know by address (the cached small ints -5 to 256,
    True, False, None) and the ints just outside that range."""
    return b


def worker_job(k):
    return k * 2


async def fetch(x):
    y = x * 2
    await asyncio.sleep(0)
    z = y + 1  # LINE:after_await
    return z


async def handler(i):
    return await fetch(i)


LONG_TEXT = "abcdefghij" * 30
LONG_LIST = list(range(50))


def drive():
    calc = Calc(100)
    i = 0
    while True:
        i += 1
        plain(i, 3)
        compute(i, 2)
        loop_sum(5)
        blank_and_comment(i)
        calc.method(i)
        Calc.cm(i)
        Calc.sm(i, 1)
        make_adder(5)(i)
        total = 0
        for v in gen(3):
            total += v
        scaled(i)
        list(map(square, range(3)))
        try:
            fails(i)
        except ValueError:
            pass
        take(LONG_TEXT, LONG_LIST)
        login("alice", "hunter2")
        for k in range(20):
            hot(k)
        edges(-6, -5, 0, 256, 257, True, False, None)
        TICKS["driver"] += 1
        time.sleep(TICK)


def work():
    k = 0
    while True:
        k += 1
        worker_job(k)
        TICKS["worker"] += 1
        time.sleep(TICK)


async def serve():
    i = 0
    while True:
        i += 1
        await handler(i)
        TICKS["async"] += 1
        await asyncio.sleep(TICK)


PROBED = {
    "plain": plain, "compute": compute, "loop_sum": loop_sum,
    "method": Calc.method, "cm": Calc.__dict__["cm"].__func__,
    "sm": Calc.__dict__["sm"].__func__, "make_adder": make_adder,
    "gen": gen, "scale": scale, "square": square, "fails": fails,
    "fetch": fetch, "worker_job": worker_job, "hot": hot,
}


def nested_codes(code):
    return [c for c in code.co_consts if hasattr(c, "co_code")]


def state():
    codes = {name: f.__code__ for name, f in PROBED.items()}
    # The closure's code lives in make_adder's co_consts (a 3.11 hook
    # rewrites them; revert must put the original back).
    for c in nested_codes(make_adder.__code__):
        codes["make_adder.<locals>." + c.co_name] = c
    out = {"codes": {name: id(c) for name, c in codes.items()},
           "ticks": dict(TICKS)}
    helper = sys.modules.get("_pydi_helper")
    if helper is not None:
        out["traps"] = helper._trap_count()     # calls that entered BPF
    mon = getattr(sys, "monitoring", None)
    if mon is not None:
        out["tools"] = {str(t): mon.get_tool(t) for t in range(6)}
        out["events"] = {str(t): mon.get_events(t) for t in range(6)}
        out["local_events"] = {
            name: [mon.get_local_events(t, c) for t in range(6)]
            for name, c in codes.items()}
    return out


def main():
    threading.Thread(target=drive, daemon=True, name="driver").start()
    threading.Thread(target=work, daemon=True, name="worker").start()
    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True,
                     name="asyncio").start()
    while not all(TICKS.values()):
        time.sleep(TICK)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "state":
            print(json.dumps(state()), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {line.strip()!r}"}),
                  flush=True)


if __name__ == "__main__":
    main()
