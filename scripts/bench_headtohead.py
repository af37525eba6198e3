"""Item 1h: `pydi inject` against the helper loaded by the service's own code,
head to head. Two fresh services of item 1 share CPU 0 under two wrk; one
takes `pydi inject`, the other loads and starts the same helper itself on
SIGUSR1 (scripts/bench_service.py, BENCH_HELPER), with no ptrace, no remote
calls and no pydi process. Each round's ratio is the injected service's
after / before over the other's: what the injection costs beyond the helper
it loads."""
import os
import signal
import statistics
import time

from bench_common import header, loadavg, log, median, now_utc, spread, stop_process
import bench_overhead as overhead

ROUNDS_PER_RUN = 4
METRIC_NAMES = {"rps": "throughput", "p99": "p99", "cpu_us": "CPU per request"}


def load_itself(pid):
    os.kill(pid, signal.SIGUSR1)
    overhead.wait_for_threads(pid, 2, 20, "item 1h after SIGUSR1")


def one_round(ctx, r, warm_s):
    procs = []
    try:
        # Neither position nor who steps first favours either side.
        injected, loaded = overhead.start_pair(ctx, procs, r)
        overhead.warm(injected, loaded, seconds=warm_s)
        before = overhead.paired_windows(injected, loaded, overhead.STEP_WINDOWS)
        if (r // 2) % 2 == 0:
            overhead.Attached(ctx, "i", injected[1], "item1h")
            load_itself(loaded[1])
        else:
            load_itself(loaded[1])
            overhead.Attached(ctx, "i", injected[1], "item1h")
        for pid in (injected[1], loaded[1]):
            if overhead.thread_count(pid) != 2:
                raise RuntimeError(f"item 1h: pid {pid} runs {overhead.thread_count(pid)} "
                                   "threads, not 2")
        overhead.warm(injected, loaded)
        after = overhead.paired_windows(injected, loaded, overhead.STEP_WINDOWS)
        return overhead.over_control((after[0], before[0]), (after[1], before[1]))
    finally:
        for proc in procs:
            stop_process(proc, timeout=10)


def run(ctx):
    started, load_start, t0 = now_utc(), loadavg(), time.monotonic()
    os.environ["BENCH_HELPER"] = os.path.join(ctx.helper_dir, "_pydi_helper.abi3.so")
    warm_s = 1 if ctx.quick else 2
    rounds = ctx.runs * ROUNDS_PER_RUN
    ratios = []
    for r in range(rounds):
        ratios.append(one_round(ctx, r, warm_s))
        log(f"item 1h round {r + 1}/{rounds}: injected over self-loaded " + ", ".join(
            f"{METRIC_NAMES[m]} {v:.4f}" for m, v in ratios[-1].items()))
    return report(ctx, ratios, started, load_start, (time.monotonic() - t0) / 60)


def mean_difference(xs):
    """The mean of xs - 1 with two standard errors either side."""
    half = 2 * statistics.stdev(xs) / len(xs) ** 0.5
    return overhead.fmt_interval(statistics.mean(xs) - 1, half)


def report(ctx, ratios, started, load_start, minutes):
    lines = ["## 1h. Service overhead: the injection against the service loading the helper "
             "itself", ""]
    lines += header(ctx, started, load_start, rounds=len(ratios))
    lines += ["", (
        "Item 1's (b) is the helper's cost and the injection's together. This section "
        "prices the injection alone: each round starts two fresh services of item 1 "
        "(both pinned to CPU 0, driven at once by two wrk on CPU 1, "
        f"{overhead.STEP_WINDOWS} windows of {overhead.WINDOW_S} s before and after); one "
        "takes `pydi inject PID`, the other loads the same helper from a memfd and starts "
        "it with its own code on SIGUSR1 (no ptrace, no remote call, no pydi process: "
        "what section 1i counts under valgrind). Which service is which and which steps "
        "first alternate. A round's ratio is the injected service's after / before over "
        "the other's (≥ 1: the injected one fares better); the difference is the mean "
        "less 1 with two standard errors either side (where it spans 0 the injection "
        "costs nothing the rounds can tell apart)."), "",
        "| metric | injected over self-loaded | min–max | difference |",
        "|---|---|---|---|"]
    for m, name in METRIC_NAMES.items():
        xs = [x[m] for x in ratios]
        lines.append(f"| {name} | **{median(xs):.4f}** | {spread(xs, '{:.4f}'.format)} | "
                     f"{mean_difference(xs)} |")
    lines += ["", (
        f"Reproduce: `scripts/bench 1h` (this run took {minutes:.0f} minutes). One side by "
        "hand: `BENCH_HELPER=build-bench/userspace-rebind/_pydi_helper.abi3.so "
        "OTEL_SERVICE_NAME=S taskset -c 0 /usr/bin/python3 scripts/bench_service.py PORT`, "
        "then `kill -USR1 PID` (self-loaded) or `pydi inject PID` (injected).")]
    return "\n".join(lines) + "\n"
