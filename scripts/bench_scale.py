"""Item 7: scale. One agent with N probes in one process (N up to 1,000; the
agent has PYPROBE_MAX_PROBES = PYDI_MAX_GATES = 1,024 slots in all), and one
probe in each of 50 processes: how the time to READY, the cost per hit and
the agent's idle work grow."""
import time

from bench_common import (Agent, App, BpfStats, Trace, bpf_prog_runs, cpu_ns, fmt_ms,
                          fmt_ns, header, loadavg, log, median, now_utc, probe_config,
                          spread)

SINGLE = [1, 100, 1000]      # probes in one process
PROCESSES = 50               # processes with one probe each
BUSY_S = 11                  # twice the agent's lease (lease_ms, 5 s) and then some
BUSY_MIN_PROBES = 1000       # the busy phase only where it can matter (see report)
READY_TIMEOUT_S = 20         # all READY by then, or reported as not
HIT_LOOPS = 5                # captured-hit loops a run; consecutive ones differ by up to 30 %


# Why the captured hit with 1,000 probes once grew (fixed since).
HOOKS_HISTORY = (
    "Until commit `9131767` (helper ABI 5) a `hooks` helper command counted as a command "
    "like any other, and a pydi asked for the hooks list after any command: so while a "
    "`pydi trace` ran (it asked once a second, unconditionally) the agent asked too, and "
    "the target built the whole list — about 300 KB with 1,000 hooks, in Python, under "
    "its GIL — twice a second; the agent then walked the reply once per probe, N × N "
    "(`ddbe17d` indexes it by probe id). The captured hit read ×1.15 with 1,000 probes on "
    "tree `2791799` and ×1.12 at `ddbe17d` (1.76 against 1.57 µs; thread CPU ×1.03: the "
    "target was waiting for its GIL), with the BPF run flat. Now the helper counts the "
    "changes to its set of hooks (`hook_changes` in its state) and a pydi asks for the "
    "list only when that count moved: once after each hook or unhook.")


def probe_calls(agent, probe_id, pid):
    """The agent's hit counter of probe_id in pid, and how long `probe list` took."""
    t0 = time.monotonic()
    try:
        listing = agent.probe("list")["probes"]
    except RuntimeError:  # the client gave up: the agent's loop did not answer in time
        return None, float("inf")
    took = (time.monotonic() - t0) * 1000
    for cfg in listing:
        if cfg["id"] == probe_id:
            for p in cfg["processes"]:
                if p["pid"] == pid:
                    return (p["calls"], p["gated"]), took
    return None, took


def measure(ctx, agent, apps, probe_id, n_expected, t_cfg, gated_n, hit_n, idle_s, busy):
    try:
        agent.wait_count("READY", n_expected, timeout=READY_TIMEOUT_S)
    except RuntimeError:
        if any(s["status"] == "ERROR" for s in agent.statuses):
            raise
    ready_at = time.monotonic()
    firsts = {}
    for s in agent.statuses:
        if s["status"] == "READY":
            firsts.setdefault((s["probe"], s["pid"]), s["time"] / 1000 - t_cfg)
    ready = sorted(firsts.values()) or [float("nan")]
    app = apps[0]
    # Right after READY (f0000 was not called since its hook): the probed
    # call, an unprobed one, a captured hit; then what the probe counted.
    gated = app.run("f0000", gated_n)
    unprobed = app.run("hot", gated_n)
    trace = Trace(ctx.pydi, app.pid, ["__main__:hot", "--rate", "0", "--max-hits", "0",
                                      "--capture", "args"])
    try:
        before = bpf_prog_runs()
        hits = [app.timed("hot", hit_n) for _ in range(HIT_LOOPS)]
        after = bpf_prog_runs()
    finally:
        counters = trace.stop()
    # The programs that ran on (nearly) every hit of hot: the agent's (its
    # lookup finds no key of its own) and, loaded last, the trace's.
    runs = sorted((pid, after[pid][0] - before[pid][0], after[pid][1] - before[pid][1])
                  for pid in after if pid in before and after[pid][1] - before[pid][1] >= hit_n)
    bpf_trace = runs[-1][1] / runs[-1][2] if runs else float("nan")
    bpf_agent = (sum(r[1] for r in runs[:-1]) / sum(r[2] for r in runs[:-1])
                 if len(runs) > 1 else float("nan"))
    calls1, list_ms = probe_calls(agent, probe_id, app.pid)
    # Then idle: the agent's and the targets' own work while nothing is
    # called; meanwhile, is f0000 still hooked (its __code__ swapped)?
    t0, a0 = time.monotonic(), cpu_ns(agent.pid)
    p0 = sum(cpu_ns(a.pid) for a in apps)
    unhooked_at = None
    while time.monotonic() - t0 < idle_s:
        if unhooked_at is None and app.ask("hooked f0000") == "hooked 0":
            unhooked_at = time.monotonic() - ready_at
        time.sleep(0.25)
    wall = time.monotonic() - t0
    agent_cpu = (cpu_ns(agent.pid) - a0) / wall / 1e7
    apps_cpu = (sum(cpu_ns(a.pid) for a in apps) - p0) / wall / 1e7
    late = app.run("f0000", gated_n // 10)
    if unhooked_at is None and app.ask("hooked f0000") == "hooked 0":
        unhooked_at = time.monotonic() - ready_at
    # Then busy: the target spins in Python (its GIL is rarely free) for
    # longer than the agent's lease; is f0000 still hooked after it?
    unhooked_busy = None
    if busy:
        app.ask(f"paced hot 1e9 {BUSY_S}")
        unhooked_busy = app.ask("hooked f0000") == "hooked 0"
    agent.read_new()
    return {"first": ready[0], "last": ready[-1], "n_ready": len(firsts),
            "all_ready": len(firsts) >= n_expected, "n_expected": n_expected,
            "ready_reports": sum(1 for s in agent.statuses if s["status"] == "READY"),
            "lapses": agent.log_count("the lease lapsed"),
            "per_probe": (ready[-1] - ready[0]) / (len(ready) - 1) if len(ready) > 1 else 0.0,
            "agent_cpu": agent_cpu, "apps_cpu": apps_cpu, "list_ms": list_ms,
            "gated": gated, "hits": hits, "unprobed": unprobed, "late": late,
            "bpf_trace": bpf_trace, "bpf_agent": bpf_agent,
            "counted": calls1[0] if calls1 else None,
            "gated_off": calls1[1] if calls1 else None,
            "unhooked_at": unhooked_at,
            "unhooked_busy": None if unhooked_busy is None else
            unhooked_at is None and unhooked_busy,
            "checked_after": time.monotonic() - ready_at,
            "trace_ready": trace.ready_s, "counters": counters}


def run_single(ctx, n, gated_n, hit_n, idle_s):
    app = App(ctx, functions=n)
    agent = None
    try:
        base = app.run("f0000", gated_n)
        base_unprobed = app.run("hot", gated_n)
        base_hit = base_loops(app, hit_n)
        agent = Agent(ctx, "item7")
        t_cfg = time.time()
        agent.write_configs("bench", [
            probe_config(f"s{i:04d}", "__main__", f"f{i:04d}", pid=app.pid, ret=False,
                         stack=False) for i in range(n)])
        res = measure(ctx, agent, [app], "s0000", n, t_cfg, gated_n, hit_n, idle_s,
                      n >= BUSY_MIN_PROBES)
    finally:
        if agent:
            agent.stop()
        app.close()
    return with_costs(res, base, base_unprobed, base_hit, gated_n, hit_n)


def base_loops(app, hit_n):
    """Wall and on-CPU ns of hit_n unprobed calls of hot: medians of 3 loops."""
    loops = [app.timed("hot", hit_n) for _ in range(3)]
    return median([w for w, _ in loops]), median([c for _, c in loops])


def with_costs(res, base, base_unprobed, base_hit, gated_n, hit_n):
    """res with per-call costs against the loops run before the agent; a
    captured hit is the median of the run's loops, in wall and on-CPU time."""
    res["gated_cost"] = (res["gated"] - base) / gated_n
    res["late_cost"] = (res["late"] * 10 - base) / gated_n
    res["unprobed_cost"] = (res["unprobed"] - base_unprobed) / gated_n
    res["hit_cost"] = median([(w - base_hit[0]) / hit_n for w, _ in res["hits"]])
    res["hit_cpu"] = median([(c - base_hit[1]) / hit_n for _, c in res["hits"]])
    return res


def run_many(ctx, gated_n, hit_n, idle_s):
    service = f"{ctx.service}-many"
    apps = []
    agent = None
    try:
        apps = [App(ctx, functions=1, service=service) for _ in range(PROCESSES)]
        base = apps[0].run("f0000", gated_n)
        base_unprobed = apps[0].run("hot", gated_n)
        base_hit = base_loops(apps[0], hit_n)
        agent = Agent(ctx, "item7")
        t_cfg = time.time()
        agent.write_configs("bench", [probe_config("many", "__main__", "f0000", service=service,
                                                   ret=False, stack=False)])
        res = measure(ctx, agent, apps, "many", PROCESSES, t_cfg, gated_n, hit_n, idle_s, False)
    finally:
        if agent:
            agent.stop()
        for a in apps:
            a.close()
    return with_costs(res, base, base_unprobed, base_hit, gated_n, hit_n)


def run(ctx):
    started, load_start = now_utc(), loadavg()
    gated_n, hit_n, idle_s = (500_000, 50_000, 3) if ctx.quick else (2_000_000, 200_000, 3)
    cases = [(f"{n} probe{'s' if n > 1 else ''} in 1 process", n) for n in SINGLE] + [
        (f"1 probe in each of {PROCESSES} processes", None)]
    results = {name: [] for name, _ in cases}
    with BpfStats():
        run_rounds(ctx, cases, results, gated_n, hit_n, idle_s)
    return report(ctx, started, load_start, cases, results, gated_n, hit_n, idle_s)


def run_rounds(ctx, cases, results, gated_n, hit_n, idle_s):
    for r in range(ctx.runs):
        for name, n in cases:
            res = (run_single(ctx, n, gated_n, hit_n, idle_s) if n
                   else run_many(ctx, gated_n, hit_n, idle_s))
            results[name].append(res)
            log(f"item 7 round {r + 1}/{ctx.runs} ({name}): READY first {res['first']*1000:.0f} ms "
                f"last {res['last']*1000:.0f} ms; gated {res['gated_cost']:.0f} ns/call, "
                f"captured {res['hit_cost']:.0f} ns/hit ({res['hit_cpu']:.0f} on CPU), unprobed {res['unprobed_cost']:.0f} ns/call; idle agent {res['agent_cpu']:.2f} % "
                f"targets {res['apps_cpu']:.2f} %; list {res['list_ms']:.0f} ms; counted "
                f"{res['counted']}; unhooked at {res['unhooked_at']}, after busy "
                f"{res['unhooked_busy']}; late {res['late_cost']:.0f} ns/call; "
                f"BPF per run: trace {res['bpf_trace']:.0f} ns, agent {res['bpf_agent']:.0f} ns; "
                f"{res['counters']}")


def counted_cell(rs, gated_n):
    known = [x["counted"] for x in rs if x["counted"] is not None]
    off = [x["gated_off"] / x["counted"] for x in rs if x["counted"]]
    cell = f"{median(known) / gated_n:.0%}; kept from the trap {median(off):.1%}" if known else "?"
    if len(known) < len(rs):
        cell += f" (`probe list` timed out in {len(rs) - len(known)} runs)"
    return cell


def report(ctx, started, load_start, cases, results, gated_n, hit_n, idle_s):
    ms = lambda v: fmt_ms(v * 1000)  # noqa: E731
    pct = lambda v: f"{v:.2f} %"  # noqa: E731
    lines = ["## 7. Scale", ""] + header(ctx, started, load_start) + [
        "",
        "One `pydi agent` per run (its slots: PYPROBE_MAX_PROBES = PYDI_MAX_GATES = 1,024 "
        "probe instances in all, over every process). *N probes in 1 process*: a fresh "
        "`scripts/bench_app.py --functions N` and a `config_dir` file of N PROBE "
        "configurations (`Pid`, arguments captured) on `f0000` … `f{N-1}`, written in one "
        "go. *1 probe in each of 50 processes*: 50 fresh processes of one service and one "
        "configuration naming it. READY times come from the statuses' own timestamps, "
        "counted from the moment the configuration file was written.",
        "",
        "Costs are measured in the first process right after READY, each against the same "
        "loop run there before the agent started: *gated call* = `f0000` (probed by the "
        f"agent at its fixed 5/s) called {gated_n:,} times, per call; *counted* = the calls "
        "the agent's probe counted during that loop (every call should be), and the share "
        "of them the helper's gate kept from the uprobe trap (the agent re-arms the gate "
        "after each capture it reads); *captured hit* "
        "= `hot` under `pydi trace --rate 0 --max-hits 0 --capture args` (every call "
        "captured; in a tight loop most find the ring buffer full, as in row 2b) called "
        f"{hit_n:,} times, {HIT_LOOPS} loops a run, the median of them (consecutive loops in "
        "one process differ by up to 30 %, with one probe as with 1,000) — that probe is the "
        "trace's, beside the agent's N; *on CPU*: the same loops' thread CPU time in the "
        "target (what a hit costs the target whoever else runs); *unprobed call* "
        "= what an unprobed function (`hot`) lost per call (the agent's background work "
        "holding the target's GIL). Then *idle* for "
        f"{idle_s} s: on-CPU time of the agent and of the target processes; *still "
        "hooked?*: is `f0000.__code__` still the hooked one (polled by the target itself "
        "every 0.25 s, 3.11), and what a call of it costs after the idle time; then, with "
        f"{BUSY_MIN_PROBES} probes, the target spins in Python for {BUSY_S} s (over twice "
        "the agent's 5 s lease) and *still hooked after busy?* asks the same again. *probe list* = wall time of one `pydi probe list` after those loops (the "
        "agent's loop has to get to it).",
        "",
        "| case | first READY | all READY | per further probe | gated call (median) | min–max | "
        "counted | captured hit (median) | min–max | on CPU | BPF per run: trace's capture / agent's "
        "(no key) | unprobed call | agent idle CPU | "
        "targets idle CPU | still hooked? | call then | still hooked after busy? | `probe list` | "
        "lease lapses (agent log) / READY reports per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, _ in cases:
        rs = results[name]
        g = [x["gated_cost"] for x in rs]
        h = [x["hit_cost"] for x in rs]
        m = lambda k: median([x[k] for x in rs])  # noqa: E731
        gone = [x["unhooked_at"] for x in rs if x["unhooked_at"] is not None]
        hooked = ("yes" if not gone else
                  f"**no** in {len(gone)} of {len(rs)} runs (unhooked {median(gone):.1f} s "
                  "after READY)")
        busy_gone = sum(1 for x in rs if x["unhooked_busy"])
        after_busy = ("not run" if all(x["unhooked_busy"] is None for x in rs) else
                      "yes" if not busy_gone else f"**no** in {busy_gone} of {len(rs)} runs")
        incomplete = [x for x in rs if not x["all_ready"]]
        all_ready = (f"**{ms(m('last'))}**" if not incomplete else
                     f"**not all in {READY_TIMEOUT_S} s** ({len(incomplete)} of {len(rs)} runs; "
                     f"median {median([x['n_ready'] for x in incomplete]):,.0f} of "
                     f"{rs[0]['n_expected']:,} READY)")
        lines.append(
            f"| {name} | {ms(m('first'))} | {all_ready} | {ms(m('per_probe'))} | "
            f"**{fmt_ns(median(g))}** | {spread(g, fmt_ns)} | "
            f"{counted_cell(rs, gated_n)} | **{fmt_ns(median(h))}** | "
            f"{spread(h, fmt_ns)} | {fmt_ns(m('hit_cpu'))} | {fmt_ns(m('bpf_trace'))} / {fmt_ns(m('bpf_agent'))} | "
            f"{fmt_ns(m('unprobed_cost'))} | {pct(m('agent_cpu'))} | "
            f"{pct(m('apps_cpu'))} | {hooked}, checked until {m('checked_after'):.0f} s | "
            f"{fmt_ns(m('late_cost'))} | {after_busy} | "
            f"{fmt_ms(m('list_ms')) if m('list_ms') != float('inf') else '**timed out**'} | "
            f"{m('lapses'):.0f} / {m('ready_reports'):,.0f} |")
    def per_probe(name):
        return median([x["per_probe"] for x in results[name]])

    first = results[cases[0][0]]
    lines += ["", "Growth against 1 probe in 1 process (ratio of medians, right after READY):", ""]
    base_g = median([x["gated_cost"] for x in first])
    base_h = median([x["hit_cost"] for x in first])
    base_c = median([x["hit_cpu"] for x in first])
    for name, _ in cases[1:]:
        rs = results[name]
        g = median([x["gated_cost"] for x in rs])
        h = median([x["hit_cost"] for x in rs])
        c = median([x["hit_cpu"] for x in rs])
        done = [x["last"] for x in rs if x["all_ready"]]
        ready = (f"all READY after {ms(median(done))}" if len(done) == len(rs) else
                 f"not all READY within {READY_TIMEOUT_S} s in {len(rs) - len(done)} of "
                 f"{len(rs)} runs")
        lines.append(f"- {name}: gated call {fmt_ns(g)} vs {fmt_ns(base_g)} (×{g / base_g:.2f}), "
                     f"captured hit ×{h / base_h:.2f} (on CPU ×{c / base_c:.2f}), {ready} (1 probe: "
                     f"{ms(median([x['last'] for x in first]))})")
    lines += [
        "",
        "What grows and why. The BPF side is flat: per run (the kernel's BPF run-time "
        "statistics, on during this item, which add a little to each run) the trace's "
        "capture costs "
        + " / ".join(fmt_ns(median([x["bpf_trace"] for x in results[n]])) for n, _ in cases)
        + " and the agent's program, which finds no key of its own for `hot`, "
        + " / ".join(fmt_ns(median([x["bpf_agent"] for x in results[n]])) for n, _ in cases)
        + " (the four cases above, in order): a hash lookup on {pid, code, line, event} "
        "does not grow with the keys. "
        f"READY grows with the count: {ms(per_probe(cases[1][0]))} per further "
        f"probe with {SINGLE[1]} in one injected process (a `hook` helper command, three BPF "
        f"map updates, a gate write each), {ms(per_probe(cases[-1][0]))} per process "
        "across 50 (an injection each), one after another.",
    ]
    big = results[cases[len(SINGLE) - 1][0]]
    if median([x["gated_cost"] for x in big]) > 2 * base_g:
        lines += ["", "What does not "
        "stay flat is the agent's once-a-second pass: once the helper of a process has run "
        "any command since the last pass (as it does while probes are being hooked, and "
        "after every re-hook), `every_second()` (`agent/probe_manager.c`) calls "
        "`hooked_probe_follow_code()` (`agent/attach.c`) for every instance of that process "
        "— a synchronous `hooks` helper command each, whose reply lists every hook of the "
        "process (about 300 KB with 1,000 hooks, a few ms to build and to parse): N "
        "commands × N hooks per pass. While the target runs "
        "Python, every command waits for its GIL (a switch interval, 5 ms), so with N "
        "probes in a busy process the pass blocks the agent's loop for about N × 5 ms. "
        "Meanwhile the ring buffer is not read, so the gate is not re-armed after a "
        "capture and calls of rate-limited probes pay the uprobe trap (the *kept from the "
        "trap* share drops, the gated call costs ~10× more), and every hit waits longer "
        "for the GIL (the *captured hit* grows although its BPF run does not); `probe "
        "list` waits (and "
        "times out after 5 s); and past 5 s the lease, renewed once per pass, lapses: the "
        "helper reverts every hook of the process (*still hooked after busy?*)."]
    else:
        lines += ["", "Until commit `90730ae` the agent's once-a-second pass sent one `hooks` "
                  "helper command per probe instance of a process whose helper had run a "
                  "command since the last pass, each reply listing every hook of the process: "
                  "N commands × N hooks. With 1,000 probes in one busy process (each command "
                  "waits for the GIL) the pass outlasted the 5 s lease, the helper reverted "
                  "every hook and the agent hooked them again, over and over: measured on "
                  "tree `ceb136c`, 1.21 µs per gated call (×15.8), 728 of 1,000 READY after "
                  "20 s, the agent at 52 % CPU. Now it is one command per process and pass."]
    lines += ["", HOOKS_HISTORY]
    if median([x["lapses"] for x in big]):
        lines += ["", "The agent notices a lapse (the helper's `lease_expiries` counter, "
                  "`agent/probe_manager.c`) and hooks every probe of the process again — but "
                  "its next pass is as long as the last, so with 1,000 probes in one process "
                  "it does not settle: the lease lapses over and over (the *lease lapses* "
                  "column, from the agent's log) and every re-hook sends READY again (*READY "
                  "reports*, against one per probe)."]
    elif any(x["unhooked_busy"] or x["unhooked_at"] for x in big):
        lines += ["", "The agent does not notice the lapse: it goes on reporting those probes "
                  "ACTIVE while nothing is hooked (*lease lapses* counts the agent's own "
                  "log lines about it)."]
    lines += [
        "",
        "Reproduce: `scripts/bench 7`; by hand: `/usr/bin/python3 scripts/bench_app.py "
        "--functions 1000` (`OTEL_SERVICE_NAME` set), `pydi agent --config A` with a "
        "`config_dir` holding `[{\"InstrumentationType\": \"PROBE\", \"Pid\": PID, "
        "\"Location\": __main__:f0000, \"CaptureArguments\": []}, …]` (1,000 entries); type "
        f"`run f0000 {gated_n}` into the target before and after; `pydi probe --socket S list`.",
    ]
    return "\n".join(lines)
