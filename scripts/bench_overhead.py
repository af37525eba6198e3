"""Item 1: service overhead. wrk against FastAPI under uvicorn (1 worker,
scripts/bench_service.py), without pydi and with pydi in four ways; requests/s
and p99 latency as ratios against "no pydi" in the same round."""
import os
import re
import subprocess

from bench_common import (Agent, Trace, cpu_ns, fmt_ms, header, loadavg, log, median, now_utc,
                          probe_config, spread, stop_process, free_port, SCRIPTS)

SERVICE = os.path.join(SCRIPTS, "bench_service.py")
HANDLER = "bench_service:read_item"
OFF_PATH = "bench_service:off_path"
CONNECTIONS = 16
PATH = "/items/42?q=abc"

CONFIGS = [
    ("a", "no pydi"),
    ("a2", "no pydi again (the noise floor: (a) against itself)"),
    ("t", "no pydi; the service starts one idle thread (as the helper's control thread)"),
    ("i", "helper injected (`pydi inject`), no agent, no probes"),
    ("b", "helper injected, agent attached, no probes (a probe added, READY, deleted)"),
    ("c", "agent: a function probe on `off_path`, never on the request path"),
    ("d", "agent: a function probe on the handler (args, return, stack) at the default rate limit (5/s)"),
    ("e", "`pydi trace` on the handler, args on every request, rate limit off"),
]

COMMANDS = {
    "a": "(service and wrk only)",
    "a2": "(service and wrk only)",
    "t": "`BENCH_IDLE_THREAD=1` in the service's environment",
    "i": "`pydi inject PID`",
    "b": "`pydi agent --config A` (A: `config_dir`, `jsonl`, `control_socket`); "
         f"`pydi probe --socket S add --pid PID {OFF_PATH}`, READY, `pydi probe --socket S del ID`",
    "c": "`pydi agent --config A`, `config_dir` holding "
         f"`[{{\"InstrumentationType\":\"PROBE\", \"Location\": {OFF_PATH}, \"CaptureArguments\":[], \"Pid\":PID, …}}]`",
    "d": "`pydi agent --config A`, `config_dir` holding "
         f"`[{{\"InstrumentationType\":\"PROBE\", \"Location\": {HANDLER}, \"CaptureArguments\":[], "
         "\"CaptureReturn\":true, \"CaptureStackTrace\":true, \"Pid\":PID}]`",
    "e": f"`pydi -j trace -p PID {HANDLER} --rate 0 --max-hits 0 --capture args > FILE`",
}

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = float(m.group(1)) * UNITS[m.group(2)]
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", text)
    return rps, p99, requests, errors.group(0) if errors else ""


def wrk(port, seconds):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{CONNECTIONS}",
                          f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{PATH}"],
                         capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(out.stdout)


def start_service(ctx, port, idle_thread=False):
    env = dict(os.environ, OTEL_SERVICE_NAME=ctx.service)
    if idle_thread:
        env["BENCH_IDLE_THREAD"] = "1"
    proc = subprocess.Popen(["taskset", "-c", "0", ctx.python, SERVICE, str(port)],
                            stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("port"):
        stop_process(proc)
        raise RuntimeError(f"{SERVICE} did not start")
    return proc


class Attached:
    """pydi set up on a running service as row `key` says (i, b-e), and undone."""

    def __init__(self, ctx, key, pid, name):
        self.key = key
        self.agent = self.trace = None
        self.counters = {}
        if key == "i":
            subprocess.run([ctx.pydi, "inject", str(pid)], check=True,
                           capture_output=True, timeout=60)
        elif key in ("b", "c", "d"):
            self.agent = Agent(ctx, name)
            if key == "b":
                self.agent.probe("add", "--id", "b-once", "--pid", str(pid), OFF_PATH)
                self.agent.wait_count("READY", 1)
                self.agent.probe("del", "b-once")
                if self.agent.probe("list").get("probes"):
                    raise RuntimeError("item 1 (b): the probe is still listed after del")
            else:
                target = OFF_PATH if key == "c" else HANDLER
                self.agent.write_configs("bench", [probe_config(
                    f"item1-{key}", *target.split(":"), pid=pid, args=True,
                    ret=key == "d", stack=key == "d")])
                self.agent.wait_count("READY", 1)
        elif key == "e":
            self.trace = Trace(ctx.pydi, pid, [HANDLER, "--rate", "0", "--max-hits", "0",
                                               "--capture", "args"],
                               out=ctx.path(f"{name}-e.jsonl"))

    def read_counters(self):
        if self.agent and self.key == "d":
            procs = self.agent.probe("list")["probes"][0]["processes"][0]
            self.counters = {"calls": procs["calls"], "snapshots": procs["snapshots"],
                             "gated": procs["gated"], "status": procs["status"]}

    def close(self):
        if self.trace:
            self.counters.update(self.trace.stop())
        if self.agent:
            self.agent.stop()
        return self.counters


def measure(port, pid, measure_s):
    cpu0 = cpu_ns(pid)
    rps, p99, requests, errors = wrk(port, measure_s)
    return {"rps": rps, "p99": p99, "cpu_us": (cpu_ns(pid) - cpu0) / requests / 1000,
            "errors": errors}


def one_run(ctx, key, warm_s, measure_s):
    port = free_port()
    svc = start_service(ctx, port, idle_thread=key == "t")
    attached = None
    counters = {}
    try:
        pid = svc.pid
        if key not in ("a", "a2", "t"):
            attached = Attached(ctx, key, pid, "item1")
        wrk(port, warm_s)
        res = measure(port, pid, measure_s)
        if attached:
            attached.read_counters()
    finally:
        if attached:
            counters = attached.close()
        stop_process(svc, timeout=10)
    if res["errors"]:
        counters["wrk"] = res["errors"]
    return {**res, "counters": counters}


# Within one process: each row's window between two windows without pydi
# attached, in an order that rotates per round; "none" (nothing set up) is
# the noise floor.
BRACKET_KEYS = ["none", "b", "c", "d", "e"]
BRACKET_MEASURE_S = 4
BRACKET_ROUNDS_PER_RUN = 4  # a window's noise is ±4 %; the targets ask about 1 %


def bracket_run(ctx, round_no, warm_s):
    """One fresh service: a window without pydi, then for each row in turn
    pydi set up, a window, pydi undone, a window without it. A row's ratios
    are against the mean of the windows either side of it (a linear drift
    cancels). From the first row on, the helper stays resident (it is never
    unloaded): the windows without pydi are a service pydi has attached to
    before, with nothing attached now."""
    port = free_port()
    svc = start_service(ctx, port)
    shift = round_no % len(BRACKET_KEYS)
    out = {}
    try:
        pid = svc.pid
        wrk(port, warm_s)
        before = measure(port, pid, BRACKET_MEASURE_S)
        for key in BRACKET_KEYS[shift:] + BRACKET_KEYS[:shift]:
            attached = Attached(ctx, key, pid, "item1-in") if key != "none" else None
            try:
                wrk(port, 1)
                during = measure(port, pid, BRACKET_MEASURE_S)
            finally:
                if attached:
                    attached.close()
            wrk(port, 1)
            after = measure(port, pid, BRACKET_MEASURE_S)
            out[key] = {m: during[m] / ((before[m] + after[m]) / 2)
                        for m in ("rps", "p99", "cpu_us")}
            before = after
    finally:
        stop_process(svc, timeout=10)
    return out


def run(ctx):
    started, load_start = now_utc(), loadavg()
    warm_s, measure_s = (1, 3) if ctx.quick else (2, 8)
    results = {k: [] for k, _ in CONFIGS}
    for r in range(ctx.runs):
        for key, _ in CONFIGS:
            res = one_run(ctx, key, warm_s, measure_s)
            results[key].append(res)
            log(f"item 1 round {r + 1}/{ctx.runs} ({key}): {res['rps']:.0f} req/s, "
                f"p99 {res['p99']:.2f} ms, {res['cpu_us']:.1f} µs CPU/request "
                f"{res['counters'] or ''}")
    inproc = {k: [] for k in BRACKET_KEYS}
    for r in range(ctx.runs * BRACKET_ROUNDS_PER_RUN):
        res = bracket_run(ctx, r, warm_s)
        for key, ratios in res.items():
            inproc[key].append(ratios)
        log(f"item 1 within-process round {r + 1}/{ctx.runs * BRACKET_ROUNDS_PER_RUN}: " + ", ".join(
            f"{k} throughput {v['rps']:.3f} CPU {v['cpu_us']:.3f}" for k, v in res.items()))
    return report(ctx, results, started, load_start, warm_s, measure_s, inproc)


TARGETS = {"b": 0.99, "c": 0.99, "d": 0.98}


def judged(key, ratios):
    """The target cell for a row: met or missed, on throughput and on p99."""
    if key not in TARGETS:
        return "reported" if key != "a" else ""
    t = TARGETS[key]
    return "; ".join(f"{what} {'met' if median(rs) >= t else '**missed**'}"
                     for what, rs in zip((f"≥ {t}: throughput", "p99"), ratios))


# Measured by hand (2026-11-26); kept as text: what is known of (b)'s cost.
EARLIER_FINDING = (
    "An earlier run of this section (5 rounds, one window before and one after) put "
    "(b) at +4 % CPU per request and traced it to the agent's uprobe links. It did not "
    "hold up under paired windows in one process (window without, the change, window "
    "with, undone; 8 pairs of 3 s, median CPU per request with / without): the agent "
    "attached as in (b) 1.001 and 1.006 (this tree's agent), 0.992 and 1.015 (the agent of "
    "`e9e3005`, before the idle fixes of item 5); a no-op BPF uprobe on an uncalled "
    "function of the interpreter, attached by a 20-line libbpf loader with no pydi "
    "involved, 1.005 bound to the service's pid and 1.000 for any pid; nothing at all "
    "0.995. A registered uprobe that never fires costs nothing measurable here. What "
    "the rows that touch the process share is the resident helper (row i, 0.94–0.97 "
    "across processes in three runs). One service, five 2 s windows, a change, six more; "
    "CPU per request after / before (median windows), per round: `pydi inject` 1.007, "
    "1.021, 1.028, 1.019, 0.968 (median 1.019); the same helper loaded from inside the "
    "service (an endpoint calling `ExtensionFileLoader` and `_start()`, no ptrace) 0.977, "
    "1.025, 1.012, 1.010, 1.037, 1.005, 1.002, 1.019, 1.041, 1.016 (1.014); an idle "
    "`threading.Thread` started 1.005, 0.999, 1.028, 1.012, 1.006, 0.951, 1.044, 0.981, "
    "0.970 (1.005); nothing 0.973, 1.002, 0.970, 1.036, 1.040, 1.024, 1.000, 0.983, 1.048 "
    "(1.002). So a resident helper may cost 1–2 % of this single-threaded service's CPU "
    "(not the ptrace injection: loading it in-process costs the same), about (b)'s "
    "shortfall; "
    "a single window's noise (±3 %) is larger than the effect. `perf record -F 2000 -p "
    "SERVICE` for 8 s before and after `pydi inject` under the same wrk run: libc's share "
    "of the samples rose from 3.16 % to 3.68 % (`malloc` 0.36 → 0.44 %, `_int_free` "
    "0.22 → 0.37 %, `_int_malloc` 0.11 → 0.24 %, `cfree` and `pthread_mutex_lock` "
    "0.10–0.11 % from nothing): a second thread turns glibc's single-thread malloc paths "
    "into locked ones, about 0.5 % of this service's CPU; the rest of the profile is "
    "unchanged within its noise. Beyond that the cause is open.")


def inproc_report(inproc):
    names = dict(CONFIGS, none="nothing set up (the noise floor: the drift between windows)")
    lines = [
        "", "### Within one process (the targets are judged here)", "",
        f"A fresh service per round ({BRACKET_ROUNDS_PER_RUN} × the rounds of the table "
        f"above); {BRACKET_MEASURE_S} s windows of wrk. First a window "
        "without pydi; then, for each row in turn (the order rotates from round to round), "
        "the row's pydi set up on the running service, 1 s of wrk, a window, pydi undone, "
        "1 s, a window without it. A row's ratios are against the mean of the two windows "
        "either side of it, so the heap, the address-space layout and a linear drift are "
        "the same on both sides; ≥ 1 is better. This is also how pydi meets a service: "
        "attached while it runs. From the first row on the helper stays resident (it is "
        "never unloaded), so the windows without pydi are a service pydi has attached to "
        "before, with nothing attached now (row (i) above: an idle helper).", "",
        "| row | pydi | throughput ratio | min–max | p99 ratio | min–max | "
        "CPU per request ratio | min–max | target |",
        "|---|---|---|---|---|---|---|---|---|"]
    for key in BRACKET_KEYS:
        rs = inproc[key]
        tr = [x["rps"] for x in rs]
        pr = [1 / x["p99"] for x in rs]
        cr = [1 / x["cpu_us"] for x in rs]
        lines.append(
            f"| {key} | {names[key]} | **{median(tr):.3f}** | {spread(tr, lambda v: f'{v:.3f}')} | "
            f"**{median(pr):.3f}** | {spread(pr, lambda v: f'{v:.3f}')} | "
            f"**{median(cr):.3f}** | {spread(cr, lambda v: f'{v:.3f}')} | "
            f"{judged(key, (tr, pr)) if key != 'none' else ''} |")
    return lines + ["", EARLIER_FINDING]


def report(ctx, results, started, load_start, warm_s, measure_s, inproc):
    base = results["a"]
    lines = ["## 1. Service overhead", ""] + header(ctx, started, load_start) + [
        "",
        f"FastAPI {fastapi_version(ctx)} under uvicorn, one worker, asyncio + h11 "
        "(`scripts/bench_service.py`, pinned to CPU 0), a fresh process per run with "
        f"`OTEL_SERVICE_NAME` set; wrk pinned to CPU 1 (1 thread, {CONNECTIONS} connections, "
        f"`GET {PATH}`), {warm_s} s warm-up then {measure_s} s measured, after READY; "
        "pydi itself is not pinned. Ratios are per round against (a) of the same round: "
        "throughput x/a, p99 a/x and the service's CPU time per request a/x (on-CPU time of "
        "all its threads over the measured run / requests served; the least noisy of the "
        "three, as it does not count time the service lost to other work on its CPU); ≥ 1 "
        "is better, median and min–max over the rounds. Across processes the address-space "
        "layout and heap differ from run to run: (a2), (a) against itself, is the noise "
        "floor, and it is wider than the 1–2 % the targets ask about; so the targets are "
        "judged within one process (the next table), and shown here only for reference. "
        "The agent's probe configuration has no rate-limit knob (every "
        "configuration gets ADOT's 5 snapshots/s, `agent/probe_config.c`), so (e) is "
        "`pydi trace --rate 0 --max-hits 0`.",
        "",
        "| row | pydi | requests/s | min–max | throughput ratio | min–max | p99 | min–max | "
        "p99 ratio (a/x) | min–max | service CPU per request | CPU ratio (a/x) | min–max | "
        "target | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, what in CONFIGS:
        rs = results[key]
        rps = [x["rps"] for x in rs]
        p99 = [x["p99"] for x in rs]
        tr = [x["rps"] / b["rps"] for x, b in zip(rs, base)]
        pr = [b["p99"] / x["p99"] for x, b in zip(rs, base)]
        cpu = [x["cpu_us"] for x in rs]
        cr = [b["cpu_us"] / x["cpu_us"] for x, b in zip(rs, base)]
        target = judged(key, (tr, pr))
        lines.append(
            f"| {key} | {what} | **{median(rps):,.0f}** | {spread(rps, lambda v: f'{v:,.0f}')} | "
            f"**{median(tr):.3f}** | {spread(tr, lambda v: f'{v:.3f}')} | "
            f"{fmt_ms(median(p99))} | {spread(p99, fmt_ms)} | **{median(pr):.3f}** | "
            f"{spread(pr, lambda v: f'{v:.3f}')} | {median(cpu):.1f} µs | **{median(cr):.3f}** | "
            f"{spread(cr, lambda v: f'{v:.3f}')} | {target} | {COMMANDS[key]} |")
    lines += ["", "pydi's counters per run:", ""]
    for key in ("d", "e"):
        lines.append(f"- {key}: " + "; ".join(
            ", ".join(f"{k} {v}" for k, v in x["counters"].items()) or "(none)"
            for x in results[key]))
    lines += inproc_report(inproc)
    lines += [
        "",
        "Reproduce: `scripts/bench 1` (all rows, interleaved). One row by hand: "
        f"`OTEL_SERVICE_NAME=S taskset -c 0 /usr/bin/python3 scripts/bench_service.py PORT`, "
        "then the row's command, then "
        f"`taskset -c 1 wrk -t1 -c{CONNECTIONS} -d{measure_s}s --latency "
        f"'http://127.0.0.1:PORT{PATH}'`.",
    ]
    return "\n".join(lines)


def fastapi_version(ctx):
    return subprocess.run([ctx.python, "-c", "import fastapi; print(fastapi.__version__)"],
                          capture_output=True, text=True).stdout.strip()
