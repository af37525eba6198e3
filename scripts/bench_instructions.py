"""Item 1, counted rather than timed: instructions and simulated cache misses
per request of the item-1 service, before and after a step in one process,
under valgrind's callgrind (a simulated CPU: the counts do not depend on what
else the machine runs, unlike the timings of item 1).

valgrind cannot host a ptrace injection (its guest's registers are not the
thread's), so the service takes the steps itself on a signal
(scripts/bench_service.py, BENCH_HELPER): loading pydi's helper from a memfd
and starting it, which is what `pydi inject` makes it run; or starting one
idle thread. Also a client for the requests:

    bench_instructions.py client PORT N
"""
import glob
import http.client
import os
import re
import signal
import subprocess
import sys
import time

from bench_common import (free_port, header, loadavg, log, median, now_utc,
                          spread, stop_process)
from bench_overhead import PATH, SERVICE, wait_for_threads

ARMS = [
    ("none", "nothing (how the service's own counts move as it runs)"),
    ("thread", "the service starts one idle thread, as the helper's control thread"),
    ("helper", "the service loads pydi's helper from a memfd and starts it "
               "(what `pydi inject` makes it run, without the ptrace)"),
]
STEP_SIGNAL = {"helper": signal.SIGUSR1, "thread": signal.SIGUSR2}
EVENTS = ["Ir", "I1mr", "D1mr", "D1mw"]
EVENT_NAMES = {"Ir": "instructions", "I1mr": "L1 instruction misses",
               "D1mr": "L1 data read misses", "D1mw": "L1 data write misses"}
WARM_REQUESTS = 200


def client(port, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    for _ in range(n):
        conn.request("GET", PATH)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}")
    conn.close()


def send_requests(ctx, port, n):
    subprocess.run(["taskset", "-c", "1", ctx.python, __file__, "client", str(port), str(n)],
                   check=True, timeout=3600)


def collect_garbage(ctx, pid, port):
    """A full collection now (SIGHUP, run by the service's main thread at its
    next request), so that none falls into the counts that follow: where it
    would fall depends on how many GC objects the step left, not on what a
    request costs."""
    os.kill(pid, signal.SIGHUP)
    send_requests(ctx, port, 10)


def callgrind_control(*args):
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=600)


def read_dumps(out_dir):
    """The service's main thread in each dump, by the tag it was dumped with:
    summary and self cost of each function, keyed (object, function),
    instructions only."""
    dumps = {}
    for path in glob.glob(os.path.join(out_dir, "cg.out.*-01")):
        with open(path) as f:
            text = f.read()
        tag = re.search(r"^desc: Trigger: dump (\S+)$", text, re.M)
        if tag:
            dumps[tag.group(1)] = parse_callgrind(text)
    return dumps


def parse_callgrind(text):
    events = re.search(r"^events: (.*)$", text, re.M).group(1).split()
    summary = [int(x) for x in re.search(r"^summary: (.*)$", text, re.M).group(1).split()]
    names, objects, self_ir = {}, {}, {}
    fn, obj, skip = None, "", False
    for line in text.splitlines():
        if skip:  # the inclusive cost of a call, not the caller's own
            skip = False
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            if fn is not None:
                fields = line.split()
                if len(fields) > 1:
                    self_ir[fn] = self_ir.get(fn, 0) + int(fields[1])
            continue
        m = re.match(r"(c?fn|c?ob)=\((\d+)\)(?: (.*))?$", line)
        if m:
            kind, ident, name = m.groups()
            if name and kind.endswith("fn"):
                names[ident] = name
            elif name:
                objects[ident] = os.path.basename(name)
            if kind == "ob":
                obj = objects.get(ident, "")
            elif kind == "fn":
                fn = (obj, names.get(ident, ident).split("'")[0])
        elif line.startswith("calls="):
            skip = True
    return {"summary": dict(zip(events, summary)), "functions": self_ir}


def one_run(ctx, arm, n):
    """A fresh service under callgrind: a full collection, 2 x n requests
    counted, the step, a full collection, 2 x n more; counts per request
    before and after."""
    out_dir = ctx.path(f"item1i-{arm}-{time.monotonic_ns()}")
    os.makedirs(out_dir)
    port = free_port()
    env = dict(os.environ, OTEL_SERVICE_NAME=ctx.service,
               BENCH_HELPER=os.path.join(ctx.helper_dir, "_pydi_helper.abi3.so"))
    proc = subprocess.Popen(
        ["taskset", "-c", "0", "valgrind", "--tool=callgrind", "--cache-sim=yes",
         "--separate-threads=yes", f"--callgrind-out-file={out_dir}/cg.out",
         ctx.python, SERVICE, str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        if not proc.stdout.readline().startswith("port"):
            raise RuntimeError("item 1i: the service did not start under valgrind")
        pid = str(proc.pid)

        def count(tag):
            callgrind_control("-z", pid)
            send_requests(ctx, port, n)
            callgrind_control("-d", tag, pid)

        send_requests(ctx, port, WARM_REQUESTS)
        collect_garbage(ctx, proc.pid, port)
        count("before1")
        count("before2")
        if arm in STEP_SIGNAL:
            os.kill(proc.pid, STEP_SIGNAL[arm])
            wait_for_threads(proc.pid, 2, 120, f"item 1i ({arm})")
        send_requests(ctx, port, WARM_REQUESTS)
        collect_garbage(ctx, proc.pid, port)
        count("after1")
        count("after2")
    finally:
        stop_process(proc, timeout=120)
    dumps = read_dumps(out_dir)
    missing = {"before1", "before2", "after1", "after2"} - set(dumps)
    if missing:
        raise RuntimeError(f"item 1i: no callgrind dump {', '.join(sorted(missing))} "
                           f"in {out_dir}")

    def per_request(tags):
        summary = {e: sum(dumps[t]["summary"][e] for t in tags) / (len(tags) * n)
                   for e in EVENTS}
        functions = {}
        for t in tags:
            for key, ir in dumps[t]["functions"].items():
                functions[key] = functions.get(key, 0) + ir / (len(tags) * n)
        return summary, functions

    before, after = per_request(("before1", "before2")), per_request(("after1", "after2"))
    return {"ratio": {e: after[0][e] / before[0][e] for e in EVENTS},
            "before": before[0],
            "delta": {k: after[1].get(k, 0) - before[1].get(k, 0)
                      for k in set(after[1]) | set(before[1])}}


def run(ctx):
    started, load_start, t0 = now_utc(), loadavg(), time.monotonic()
    n = 100 if ctx.quick else 300
    results = {arm: [] for arm, _ in ARMS}
    for r in range(ctx.runs):
        keys = [arm for arm, _ in ARMS]
        for arm in keys[r % len(keys):] + keys[:r % len(keys)]:
            res = one_run(ctx, arm, n)
            results[arm].append(res)
            log(f"item 1i round {r + 1}/{ctx.runs} ({arm}): after / before " + ", ".join(
                f"{e} {res['ratio'][e]:.4f}" for e in EVENTS))
    return report(ctx, results, started, load_start, n, (time.monotonic() - t0) / 60)


def over_none(results, arm, event):
    """The step's own effect: its after / before over that of nothing."""
    return (median([r["ratio"][event] for r in results[arm]])
            / median([r["ratio"][event] for r in results["none"]]))


def mean_delta(runs):
    keys = set().union(*(r["delta"] for r in runs))
    return {k: sum(r["delta"].get(k, 0) for r in runs) / len(runs) for k in keys}


def where(results, arm):
    """Instructions per request the step added, by object and by function,
    over what nothing's runs moved."""
    mine, base = mean_delta(results[arm]), mean_delta(results["none"])
    added = {k: mine.get(k, 0) - base.get(k, 0) for k in set(mine) | set(base)}
    by_object = {}
    for (obj, _), v in added.items():
        by_object[obj] = by_object.get(obj, 0) + v
    return added, by_object


def report(ctx, results, started, load_start, n, minutes):
    before = results["none"][0]["before"]
    lines = ["## 1i. Service overhead, counted: instructions and cache misses per request", ""]
    lines += header(ctx, started, load_start)
    lines += ["", (
        "Timings on this shared VM move by ±2 – 3 % from one window to the next, and it has "
        "no hardware counters (`perf stat -e instructions`: not supported). So item 1's "
        "service is also run under valgrind's callgrind (`--cache-sim=yes`): a simulated "
        "CPU that counts every instruction and simulates the L1 caches, whatever else the "
        "machine runs. One fresh service per run (pinned to CPU 0, a sequential keep-alive "
        f"client on CPU 1): {WARM_REQUESTS} requests to warm up, a full garbage collection, "
        f"its main thread's counts over 2 × {n} requests, the step, {WARM_REQUESTS} requests, "
        f"a full collection, 2 × {n} more (a collection inside a count would weigh more "
        "than the effects measured, and where it falls depends on how many GC objects "
        "the step left); a run's "
        "ratio is after / before per request (≥ 1: the step made requests dearer). valgrind "
        "cannot host a ptrace injection, so the service takes the step itself on a signal. "
        f"Per request before any step: {before['Ir']:,.0f} instructions, "
        f"{before['I1mr']:,.0f} L1 instruction misses, {before['D1mr']:,.0f} L1 data read "
        f"and {before['D1mw']:,.0f} write misses."), ""]
    lines += ["| row | step | " + " | ".join(
        f"{EVENT_NAMES[e]} after / before | min–max" for e in EVENTS) + " |",
        "|---|---|" + "---|---|" * len(EVENTS)]
    for arm, label in ARMS:
        cells = []
        for e in EVENTS:
            vals = [r["ratio"][e] for r in results[arm]]
            cells += [f"**{median(vals):.4f}**", spread(vals, "{:.4f}".format)]
        lines.append(f"| {arm} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "The step's own cost (its median after / before over nothing's):", "",
              "| row | " + " | ".join(EVENT_NAMES[e] for e in EVENTS) + " |",
              "|---|" + "---|" * len(EVENTS)]
    for arm, _ in ARMS[1:]:
        lines.append(f"| {arm} | " + " | ".join(
            f"**{100 * (over_none(results, arm, e) - 1):+.2f} %**" for e in EVENTS) + " |")
    lines += ["", "Where the instructions a step added go (per request, mean over its runs "
              "less nothing's mean):", ""]
    for arm, _ in ARMS[1:]:
        added, by_object = where(results, arm)
        objs = ", ".join(f"{obj or '?'} {v:+,.0f}" for obj, v in
                         sorted(by_object.items(), key=lambda kv: -abs(kv[1]))[:4])
        top = ", ".join(f"`{fn}` {v:+,.0f}" for (obj, fn), v in
                        sorted(added.items(), key=lambda kv: -kv[1])[:8] if v >= 5)
        lines.append(f"- {arm}: by object {objs}; the functions that grew most: {top}.")
    lines += ["", f"Reproduce: `scripts/bench 1i` (valgrind; this run took {minutes:.0f} "
              "minutes). One run by hand: `BENCH_HELPER=build-bench/userspace-rebind/"
              "_pydi_helper.abi3.so taskset -c 0 valgrind --tool=callgrind --cache-sim=yes "
              "--separate-threads=yes /usr/bin/python3 scripts/bench_service.py PORT`; "
              "requests with `scripts/bench_instructions.py client PORT N`; "
              "`callgrind_control -z PID` / `-d TAG PID` around them; `kill -USR1 PID` "
              "loads the helper, `kill -USR2 PID` starts an idle thread, `kill -HUP PID` "
              "collects garbage."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "client":
        client(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} client PORT N (the rest runs from scripts/bench)")
