"""Item 5: the agent's footprint. RSS and CPU of `pydi agent` with 50 probe
configurations over 5 processes of one service, idle and at 1,000
snapshots/s, idle and loaded windows interleaved."""
import os
import re
import shutil
import subprocess
import time

from bench_common import (Agent, App, cpu_ns, fmt_ms, header, loadavg, log, median, memory,
                          now_utc, probe_config, rss_kib, spread)

PROCESSES = 5
CONFIGS = 50
CALLS_PER_S = 4           # per function and process: 250 instances x 4 = 1,000/s
RSS_TARGET_MIB = 40
IDLE_CPU_TARGET = 0.5     # percent of one CPU


def window(agent, apps, seconds):
    t0, a0 = time.monotonic(), cpu_ns(agent.pid)
    apps0 = sum(cpu_ns(a.pid) for a in apps)
    agent.read_new()
    s0 = agent.snapshot_lines
    time.sleep(seconds)
    agent.read_new()
    wall = time.monotonic() - t0
    return {"cpu": (cpu_ns(agent.pid) - a0) / wall / 1e7,          # percent of one CPU
            "apps_cpu": (sum(cpu_ns(a.pid) for a in apps) - apps0) / wall / 1e7,
            "snaps": (agent.snapshot_lines - s0) / wall, **memory(agent.pid)}


def run(ctx):
    started, load_start = now_utc(), loadavg()
    seconds = 2 if ctx.quick else 6
    service = ctx.service + "-fp"
    apps = [App(ctx, functions=CONFIGS, service=service) for _ in range(PROCESSES)]
    agent = None
    try:
        agent = Agent(ctx, "item5")
        time.sleep(1.0)
        bare = memory(agent.pid)
        t0, c0 = time.monotonic(), cpu_ns(agent.pid)
        time.sleep(seconds)
        bare["cpu"] = (cpu_ns(agent.pid) - c0) / (time.monotonic() - t0) / 1e7
        configs = [probe_config(f"fp-{i:02d}", "__main__", f"f{i:04d}", service=service)
                   for i in range(CONFIGS)]
        t_cfg = time.time()
        agent.write_configs("bench", configs)
        agent.wait_count("READY", CONFIGS * PROCESSES, timeout=300)
        ready_s = max(s["time"] for s in agent.statuses if s["status"] == "READY") / 1000 - t_cfg
        time.sleep(1.0)
        results = {"idle": [], "loaded": []}
        for r in range(ctx.runs):
            for mode in ("idle", "loaded"):
                rate = CALLS_PER_S if mode == "loaded" else 0
                for a in apps:
                    a.ask(f"pace {CONFIGS} {rate}")
                time.sleep(0.5)  # the switch settles
                res = window(agent, apps, seconds)
                results[mode].append(res)
                log(f"item 5 round {r + 1}/{ctx.runs} ({mode}): agent {res['cpu']:.2f} % CPU, "
                    f"RSS {res['rss']:.1f} MiB, {res['snaps']:.0f} snapshots/s, "
                    f"targets {res['apps_cpu']:.2f} % CPU")
        for a in apps:
            a.ask(f"pace {CONFIGS} 0")
        hwm = rss_kib(agent.pid, "VmHWM") / 1024
        time.sleep(0.5)
        prof = profile_idle(ctx, agent.pid, seconds)
        listing = agent.probe("list")["probes"]
    finally:
        if agent:
            agent.stop()
        for a in apps:
            a.close()
    insts = [p for cfg in listing for p in cfg["processes"]]
    statuses = {}
    for p in insts:
        statuses[p["status"]] = statuses.get(p["status"], 0) + 1
    drops = {k: sum(p["drops"][k] for p in insts) for k in ("rate", "max_hits", "ringbuf")}
    snaps_total = sum(p["snapshots"] for p in insts)
    return report(ctx, started, load_start, seconds, bare, ready_s, results, hwm, statuses,
                  drops, snaps_total, prof)


PROFILED = ["pm_tick", "every_second", "hooked_probe_follow_hooks", "attach_command",
            "helper_command", "json_loads", "json_delete", "pm_engine_consume",
            "probe_engine_poll", "exporter_submit", "snapshot_build"]


def profile_idle(ctx, pid, seconds):
    """Share of the idle agent's on-CPU samples under a few functions."""
    if not shutil.which("perf"):
        return {}
    data = ctx.path("item5.perf")
    subprocess.run(["perf", "record", "-q", "--call-graph", "dwarf", "-F", "500", "-o", data,
                    "-p", str(pid), "--", "sleep", str(seconds)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 120)
    rep = subprocess.run(["perf", "report", "-i", data, "--children", "--sort", "sym", "--stdio",
                          "-g", "none"], capture_output=True, text=True).stdout
    os.unlink(data)
    share = {}
    for text in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[[.k]\]\s+(\S+)", text)
        if m and m.group(2) in PROFILED and m.group(2) not in share:
            share[m.group(2)] = float(m.group(1))
    return share


# Measured by hand (2026-11-26); kept as text: it explains the idle row.
IDLE_HISTORY = (
    "Idle CPU before `7d3575e`: 0.75 % in the committed run of 14:14 (1.6–2.6 % by hand "
    "with the 250 instances READY and never hit). `perf annotate` put most of it on the "
    "first load from each process and instance entry in the walks of the 100 ms tick: on "
    "this VM a page first touched after a sleep costs microseconds (a C loop reading one "
    "byte of each of 250 blocks of 4.8 KB after `usleep(100 ms)`: 0.7–1.4 µs a block; of "
    "76 blocks of 74 KB: 1.4–7 µs), and the tick walked 76 process entries of 74 KB and "
    "250 instances ten times a second. Now each walk runs when something in it is due "
    "(and every 10 s), a process's 72 KB of attach state is allocated only once it is "
    "opened, the main loop sleeps up to 1 s when nothing is due, and the config "
    "directory's 5 s backstop stats the files instead of re-reading them.")


def report(ctx, started, load_start, seconds, bare, ready_s, results, hwm, statuses, drops,
           snaps_total, prof):
    f1 = lambda v: f"{v:.1f}"  # noqa: E731
    f2 = lambda v: f"{v:.2f}"  # noqa: E731
    lines = ["## 5. Agent footprint", ""] + header(ctx, started, load_start) + [
        "",
        f"{PROCESSES} `scripts/bench_app.py` processes of one service (`OTEL_SERVICE_NAME`), "
        f"{CONFIGS} functions each; one `pydi agent` (Release build, no sanitizers) whose "
        f"`config_dir` holds {CONFIGS} PROBE configurations naming that service (arguments, "
        f"return value, stack), so every configuration is instrumented in every process: "
        f"{CONFIGS * PROCESSES} probe instances. An agent probe's rate limit is ADOT's "
        f"5 snapshots/s and cannot be changed in a configuration, so 1,000 snapshots/s is "
        f"{CONFIGS * PROCESSES} instances × {CALLS_PER_S} calls/s (each process calls its "
        f"{CONFIGS} functions every {1000 // CALLS_PER_S} ms). Snapshots go to a JSON-lines file. "
        f"Idle and loaded windows of {seconds} s alternate; CPU is the agent's on-CPU time "
        "(all threads, `/proc/PID/task/*/schedstat`) over the window's wall time, in % of one "
        "CPU; RSS is `VmRSS` at the window's end.",
        "",
        "| state | agent CPU (median) | min–max | agent RSS (median) | min–max | of it, BPF map "
        "mappings | RSS without them | PSS | snapshots/s written | targets' CPU (5 processes) | "
        "target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| agent started, no probes, no process matched | {bare['cpu']:.2f} % | | "
        f"{bare['rss']:.1f} MiB | | {bare['bpf_maps']:.1f} MiB | {bare['rss'] - bare['bpf_maps']:.1f} MiB | "
        f"{bare['pss']:.1f} MiB | 0 | | |",
    ]
    for mode in ("idle", "loaded"):
        rs = results[mode]
        cpu = [x["cpu"] for x in rs]
        rss = [x["rss"] for x in rs]
        m = lambda k: median([x[k] for x in rs])  # noqa: E731
        verdict = f"RSS ≤ {RSS_TARGET_MIB} MiB: " + ("met" if max(rss) <= RSS_TARGET_MIB
                                                     else "**missed**")
        if mode == "idle":
            verdict += f"; CPU ≤ {IDLE_CPU_TARGET} %: " + (
                "met" if median(cpu) <= IDLE_CPU_TARGET else "**missed**")
        lines.append(
            f"| {CONFIGS * PROCESSES} instances, {mode} | **{median(cpu):.2f} %** | "
            f"{spread(cpu, f2)} % | **{median(rss):.1f} MiB** | {spread(rss, f1)} MiB | "
            f"{m('bpf_maps'):.1f} MiB | {m('rss') - m('bpf_maps'):.1f} MiB | {m('pss'):.1f} MiB | "
            f"{m('snaps'):,.0f} | {m('apps_cpu'):.2f} % | {verdict} |")
    lines += [
        "",
        f"- all {CONFIGS * PROCESSES} instances READY {fmt_ms(ready_s * 1000)} after the "
        "configuration file was written (the statuses' own timestamps)",
        f"- peak RSS (`VmHWM`): {hwm:.1f} MiB",
        f"- at the end: statuses {statuses}; {snaps_total:,} snapshots; drops {drops} "
        "(rate = calls the 5/s limit turned away, counted)",
        "",
        "Memory: the consumer of a BPF ring buffer maps its data pages twice (the "
        "wrap-around mapping), so the agent's ring buffer (`RINGBUF_BYTES`, `agent/agent.c`; "
        f"{results['idle'][0]['bpf_maps'] / 2:.0f} MiB of BPF maps mapped here) counts twice "
        "in RSS (*of it, BPF map mappings*); what the agent itself allocates and maps is the "
        "*RSS without them* column.",
    ]
    if prof:
        lines += ["", "Where the idle agent's CPU goes (`perf record --call-graph dwarf -p "
                  f"AGENT` for {seconds} s with the {CONFIGS * PROCESSES} instances idle; "
                  "share of its on-CPU samples, callees included):", ""]
        lines += [f"- `{sym}`: {prof[sym]:.0f} %" for sym in PROFILED if sym in prof]
    lines += ["", IDLE_HISTORY]
    lines += [
        "",
        "Reproduce: `scripts/bench 5`; by hand: five "
        "`OTEL_SERVICE_NAME=S /usr/bin/python3 scripts/bench_app.py --functions 50` "
        "(type `pace 50 4` into each to load it), `pydi agent --config A` with A = "
        "`{\"config_dir\": D, \"jsonl\": F, \"control_socket\": S}` and D holding the 50 "
        "configurations `{\"InstrumentationType\": \"PROBE\", \"Service\": S, \"Location\": "
        "__main__:f00NN, \"CaptureArguments\": [], \"CaptureReturn\": true, "
        "\"CaptureStackTrace\": true}`; read `/proc/PID/status` and `/proc/PID/task/*/schedstat`.",
    ]
    return "\n".join(lines)
