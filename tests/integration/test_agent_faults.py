"""`pydi agent` under faults (issue 8, "Faults"): the real agent, real
target processes on the host's CPython 3.11, probes added over the control
socket or the watched config directory, statuses and snapshots read from
its JSON lines and `pydi -j probe list`.

  1. A probed target forks (a gunicorn-style worker), execs and exits: the
     worker gets its own probe (READY and snapshots for its pid, one hook),
     the exec'd image is a new process, the dead ones leave the list; the
     agent neither crashes nor leaks (ASan's leak check at its exit).
  2. Pid reuse: a probe configured for one pid never lands on a later
     process that gets the same pid (forced with ns_last_pid).
  3. Agent SIGKILL with probes active: a restarted agent adopts the helper,
     drops the dead agent's hooks and hooks again (exactly one hook per
     probe, one hit per call, snapshots flow); killed again and left dead,
     the lease reverts the target.
  4. Ring-buffer overflow: the agent SIGSTOPped while an unlimited probe
     fires in a tight loop: drops counted per probe, agent RSS flat over two
     rounds, the target never waits for the agent.
  5. DI API and collector hostile (10 s silences, resets, 500s, invalid
     JSON, 100 MB bodies, endless chunked bodies): bounded RSS and time,
     one clear log line per failure, probes keep working, recovery.
  6. JSON lines on a full filesystem (a 512 KiB tmpfs): drops counted in the
     metrics, the agent keeps running, lines whole, recovery when space
     returns.
  7. `pydi trace` on a function the agent probes: the agent keeps capturing
     while the trace is hooked and after it has gone, and while nothing
     changes neither sends the target's helper a command.
"""
import json
import os
import re
import signal
import subprocess
import time
import uuid

from conftest import PYDI, report
from agent_harness import (App, Hostile, RssSampler, free_port,
                           helper_loaded, helper_state, probe_config, rss_kb,
                           start_time, wait_until, world_fixtures)

M = "fault_app"
FINDINGS = []


def note(line):
    FINDINGS.append(line)
    report("agent faults: " + line)


def service_name(what):
    return f"pydi-faults-{what}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


workdir, world = world_fixtures("pydi-agent-faults-")


def statuses_since(agent, probe, pid, t_wall):
    """Status lines of (probe, pid) whose own time is at or after t_wall."""
    return [s for s in agent.statuses(probe, pid)
            if s["time"] >= t_wall * 1000 - 5]


# == 1 ==

def test_fork_exec_exit_while_probed(world):
    service = service_name("fork")
    agent = world.agent()
    app = world.app(service)
    agent.add("--id", "work", "--service", service, "--type", "PROBE",
              f"{M}:work")
    rss0 = agent.rss_kb()
    wait_until("READY for the app", lambda: agent.statuses(
        "work", app.pid, "READY"), 20, agent.tail)
    wait_until("snapshots from the app", lambda: agent.snapshots(
        "work", app.pid), 10, agent.tail)
    hooked_len = app.state()["code_len"]
    assert helper_state(app.pid)["hooks_active"] == 1

    # -- fork: a worker like gunicorn's, inheriting the parent's hook --
    t_fork = time.time()
    child = app.fork()
    ready = wait_until("READY for the forked worker's own pid", lambda:
                       agent.statuses("work", child, "READY"), 20, agent.tail)
    snaps = wait_until("snapshots taken in the worker", lambda: [
        s for s in agent.snapshots("work", child)
        if s["thread"]["id"] == child], 15, agent.tail)
    assert all(s["pid"] == child for s in snaps), snaps[:2]
    state = helper_state(child)
    assert state and state["hooks_active"] == 1, (
        "the worker should hold exactly its own hook", state)
    assert agent.status_of("work", app.pid) in ("READY", "ACTIVE"), \
        agent.probe_list()
    n_parent = len(agent.snapshots("work", app.pid))
    wait_until("the parent keeps producing snapshots", lambda: len(
        agent.snapshots("work", app.pid)) > n_parent, 10, agent.tail)
    note(f"forked worker READY {ready[0]['_t'] - t_fork:.1f} s after fork, "
         f"its snapshots carry its pid")

    # -- the worker dies: its instance goes, nothing else does --
    os.kill(child, signal.SIGKILL)
    t_kill = time.time()
    wait_until("the dead worker gone from probe list", lambda: agent.process(
        "work", child) is None, 5, agent.tail)
    gone_after = time.time() - t_kill
    assert agent.process("work", app.pid), agent.probe_list()

    # -- exec: the same pid, a new image: a new process for the agent --
    t_exec = time.time()
    app.exec_()
    ready2 = wait_until("READY again for the exec'd image (same pid)", lambda:
                        statuses_since(agent, "work", app.pid, t_exec) and [
                            s for s in statuses_since(agent, "work", app.pid,
                                                      t_exec)
                            if s["status"] == "READY"], 20, agent.tail)
    wait_until("snapshots from the exec'd image", lambda: agent.snapshots(
        "work", app.pid, since=ready2[0]["_t"]), 10, agent.tail)
    entries = [p for p in agent.probe_list() if p["id"] == "work"][0]["processes"]
    assert [e["pid"] for e in entries].count(app.pid) == 1, entries
    assert helper_state(app.pid)["hooks_active"] == 1
    assert app.state()["code_len"] == hooked_len

    # -- exit --
    app.stop()
    t_exit = time.time()
    wait_until("the exited app gone from probe list", lambda: agent.process(
        "work", app.pid) is None, 5, agent.tail)
    exit_gone = time.time() - t_exit
    assert agent.alive(), agent.tail()
    rss1 = agent.rss_kb()
    note(f"fork/exec/exit: worker gone {gone_after:.2f} s after SIGKILL, "
         f"exec'd image READY {ready2[0]['_t'] - t_exec:.1f} s after exec, "
         f"exited app gone {exit_gone:.2f} s after exit; agent RSS "
         f"{rss0 // 1024} -> {rss1 // 1024} MiB")
    assert agent.stop() == 0, agent.tail()


# == 2 ==

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"


def spawn_with_pid(world, pid, service, attempts=200):
    """An App whose pid is `pid` (free again): ns_last_pid set to pid - 1
    right before the fork; any other fork on the machine in between spoils
    an attempt, so retry (a wrong-pid app is stopped at once)."""
    for _ in range(attempts):
        with open(NS_LAST_PID, "w") as f:
            f.write(str(pid - 1))
        app = App(world.dir, service)
        if app.pid == pid:
            world.apps.append(app)
            return app
        app.stop()
    raise AssertionError(f"could not get pid {pid} again in {attempts} tries")


def test_pid_reuse_never_inherits_a_dead_process_probe(world):
    """A probe configured for pid P (the `Pid` key, `probe add --pid`)
    means that process. The process dies and a new one with the same
    service gets pid P again, while the agent runs and while it is stopped
    (it then sees the exit and the new process in one batch): the new
    process gets no helper, no status and no snapshot from that probe; a
    probe by service still reaches it, as a new process."""
    service = service_name("reuse")
    agent = world.agent()
    agent.add("--id", "by-service", "--service", service, "--type", "PROBE",
              f"{M}:pay")
    rounds = []
    for stopped in (False, True):
        a = world.app(service)
        probe_id = f"pid-{a.pid}"
        agent.add("--id", probe_id, "--pid", str(a.pid), "--type", "PROBE",
                  f"{M}:work")
        wait_until("READY of the pid probe for its process", lambda: agent.
                   statuses(probe_id, a.pid, "READY"), 20, agent.tail)
        wait_until("its snapshots", lambda: agent.snapshots(probe_id, a.pid),
                   10, agent.tail)
        a_start = start_time(a.pid)
        if stopped:
            os.kill(agent.pid, signal.SIGSTOP)
        a.stop()
        b = spawn_with_pid(world, a.pid, service)
        t_b = time.time()
        assert start_time(b.pid) != a_start
        if stopped:
            os.kill(agent.pid, signal.SIGCONT)
        # The service's probe reaches b: the agent has looked at it.
        wait_until("the by-service probe READY in the new process", lambda: [
            s for s in statuses_since(agent, "by-service", b.pid, t_b)
            if s["status"] == "READY"], 20, agent.tail)
        time.sleep(1.5)     # a rescan and a few sweeps of the pid probe
        leaked = statuses_since(agent, probe_id, b.pid, t_b)
        assert not leaked, (
            f"the probe for dead pid {a.pid} reported in its successor "
            f"(same pid, agent {'stopped' if stopped else 'running'})",
            leaked, agent.tail())
        assert agent.process(probe_id, b.pid) is None, agent.probe_list()
        # Taken after b started: the dead process's last snapshots may still
        # be read (and legitimately so) after t_b.
        assert not agent.snapshots(probe_id, b.pid, taken_since=t_b)
        state = helper_state(b.pid)
        assert state["hooks_active"] == 1, (
            "only the by-service probe may be hooked in the successor", state)
        assert b.state()["original"], "work() hooked in the successor"
        rounds.append(stopped)
        b.stop()
    assert agent.alive(), agent.tail()
    note("pid reuse (ns_last_pid) with the agent running and stopped: the "
         "dead process's pid probe never reached its successor; the "
         "service's probe did")


# == 3 ==

def hits_per_call(agent, app, probe_id, seconds=1.5):
    """Probe hits (the gate's count, one per call that reached the hook)
    per call the app made, over a few seconds."""
    def sample():
        proc = agent.process(probe_id, app.pid)
        return proc["calls"], app.state()["calls"]
    h0, c0 = sample()
    time.sleep(seconds)
    h1, c1 = sample()
    assert c1 > c0, "the app made no calls"
    return (h1 - h0) / (c1 - c0)


def test_agent_sigkill_then_restart_adopts_then_lease_reverts(world, workdir):
    """Two probes from a config file; the agent SIGKILLed; a new agent on
    the same config directory at once (the lease still running): it finds
    the dead agent's hooks, removes them and hooks again — exactly one hook
    per probe, one hit per call, snapshots flowing. Then it is SIGKILLed
    too and left dead: the lease reverts the app."""
    service = service_name("restart")
    shared_dir = os.path.join(workdir, "probes.d")
    os.mkdir(shared_dir)
    with open(os.path.join(shared_dir, "probes.json"), "w") as f:
        json.dump([probe_config("r-work", f"{M}:work", service=service),
                   probe_config("r-pay", f"{M}:pay", service=service)], f)
    lease_ms = 3000
    app = world.app(service)
    original_len = app.state()["code_len"]

    def armed(agent):
        for probe_id in ("r-work", "r-pay"):
            wait_until(f"{probe_id} READY", lambda p=probe_id: agent.statuses(
                p, app.pid, "READY"), 20, agent.tail)
            wait_until(f"{probe_id} snapshots", lambda p=probe_id: agent.
                       snapshots(p, app.pid), 10, agent.tail)
        return helper_state(app.pid)

    agent1 = world.agent(config_dir=shared_dir, lease_ms=lease_ms)
    state1 = armed(agent1)
    assert state1["hooks_active"] == 2, state1
    hooked_len = app.state()["code_len"]
    assert hooked_len != original_len
    ratio1 = hits_per_call(agent1, app, "r-work")

    agent1.stop(signal.SIGKILL)
    t_kill = time.time()
    agent2 = world.agent(config_dir=shared_dir, lease_ms=lease_ms)
    state2 = armed(agent2)
    adopted = time.time() - t_kill
    # Past the dead agent's lease: the new agent renews the same lease.
    time.sleep(max(0.0, t_kill + lease_ms / 1000 + 1.0 - time.time()))
    state2 = helper_state(app.pid)
    assert state2["hooks_active"] == 2, (
        "exactly one hook per probe after the restart", state2)
    assert state2["lease_expiries"] == state1["lease_expiries"], (
        "the lease lapsed although the new agent runs", state1, state2)
    now = app.state()
    assert not now["original"] and now["code_len"] == hooked_len, (
        "work() hooked twice (or not at all) after the restart", now,
        hooked_len)
    ratio2 = hits_per_call(agent2, app, "r-work")
    assert 0.8 <= ratio2 <= 1.2, (
        f"{ratio2:.2f} hits per call after the restart (a stale second hook "
        f"would double it; before the kill: {ratio1:.2f})")
    t_mark = time.time()
    wait_until("snapshots after the restart keep flowing", lambda: len(
        agent2.snapshots("r-work", app.pid, since=t_mark)) >= 2, 10,
        agent2.tail)
    listed = [p["id"] for p in agent2.probe_list()]
    assert sorted(listed) == ["r-pay", "r-work"], listed

    # Stopped (not dead) for longer than the lease: the helper reverts;
    # resumed, the agent notices and hooks again.
    os.kill(agent2.pid, signal.SIGSTOP)
    try:
        wait_until("the lease reverts the app while the agent is stopped",
                   lambda: app.state()["original"], lease_ms / 1000 + 3)
    finally:
        os.kill(agent2.pid, signal.SIGCONT)
    t_cont = time.time()
    for probe_id in ("r-work", "r-pay"):
        wait_until(f"{probe_id} READY again after SIGCONT", lambda p=probe_id: [
            s for s in statuses_since(agent2, p, app.pid, t_cont)
            if s["status"] == "READY"], 10, agent2.tail)
    wait_until("snapshots again after SIGCONT", lambda: agent2.snapshots(
        "r-work", app.pid, since=time.time() - 0.5), 10, agent2.tail)
    rehooked = time.time() - t_cont
    state3 = helper_state(app.pid)
    assert state3["hooks_active"] == 2, state3
    assert app.state()["code_len"] == hooked_len
    assert "lease lapsed" in agent2.stderr(), agent2.tail()

    agent2.stop(signal.SIGKILL)
    t_kill2 = time.time()
    wait_until("the lease reverts the app after the second SIGKILL", lambda:
               app.state()["original"], lease_ms / 1000 + 3,
               lambda: str(helper_state(app.pid)))
    reverted = time.time() - t_kill2
    after = helper_state(app.pid)
    assert after["hooks_active"] == 0, after
    assert after["lease_expiries"] == state3["lease_expiries"] + 1, after
    assert app.state()["code_len"] == original_len
    calls = app.state()["calls"]
    time.sleep(0.3)
    assert app.state()["calls"] > calls, "the app stopped after the revert"
    note(f"SIGKILL + restart: new agent hooked again {adopted:.1f} s after "
         f"the kill, 2 hooks for 2 probes, {ratio2:.2f} hits per call "
         f"(before: {ratio1:.2f}); SIGSTOPped past the lease: reverted, "
         f"hooked again {rehooked:.1f} s after SIGCONT; left dead, the lease "
         f"reverted {reverted:.1f} s after the kill (lease {lease_ms} ms)")


# == 4 ==

def test_ringbuf_overflow_counts_drops_and_never_stalls_the_target(world):
    """Two probes with no rate limit on the functions the app calls in a
    tight loop; the agent SIGSTOPped twice for 4 s: the 16 MiB capture
    ring fills, BPF counts each probe's drops, the app keeps its pace (the
    hook's cost only), and after SIGCONT the agent catches up with its RSS
    no higher in the second round than in the first."""
    service = service_name("ring")
    # A lease longer than the stops: this test is about the ring buffer.
    agent = world.agent(jsonl="/dev/null", queue_max=2000, lease_ms=60000)
    app = world.app(service)
    sampler = RssSampler(agent.pid)
    try:
        base_rate = app.ask("rate 1")["rate"]
        for probe_id, fn in (("ring-work", "work"), ("ring-pay", "pay")):
            agent.add("--id", probe_id, "--service", service, "--type",
                      "PROBE", "--rate", "0", f"{M}:{fn}")
            wait_until(f"{probe_id} READY", lambda p=probe_id: agent.status_of(
                p, app.pid) in ("READY", "ACTIVE"), 20, agent.tail)
        rss_start = agent.rss_kb()
        running = app.ask("rate 2")["rate"]
        rounds = []
        for _ in range(2):
            before = {p: agent.process(p, app.pid) for p in ("ring-work", "ring-pay")}
            t_stop = time.monotonic()
            os.kill(agent.pid, signal.SIGSTOP)
            try:
                stopped = [app.ask("rate 2")["rate"] for _ in range(2)]
            finally:
                os.kill(agent.pid, signal.SIGCONT)
            t_cont = time.monotonic()
            after = wait_until("probe list answers after SIGCONT", lambda: {
                p: agent.process(p, app.pid) for p in ("ring-work", "ring-pay")},
                20, agent.tail)
            answered = time.monotonic() - t_cont
            app.ask("rate 1")
            time.sleep(1)
            later = agent.process("ring-work", app.pid)
            rounds.append({
                "stopped_rate": min(stopped),
                "drops": {p: after[p]["drops"]["ringbuf"] -
                          before[p]["drops"]["ringbuf"] for p in after},
                "snapshots_after": later["snapshots"] -
                after["ring-work"]["snapshots"],
                "peak": sampler.peak(since=t_stop),
                "answered": answered})
        assert agent.alive(), agent.tail()
    finally:
        sampler.stop()
    for r in rounds:
        for p, d in r["drops"].items():
            assert d > 1000, (f"{p}: only {d} ring-buffer drops counted while "
                              f"the agent was stopped", rounds)
        assert r["snapshots_after"] > 0, ("no snapshots after SIGCONT", rounds)
        assert r["stopped_rate"] >= 0.7 * running, (
            f"the app slowed down while the agent was stopped: "
            f"{r['stopped_rate']:.0f} calls/s vs {running:.0f} with the agent "
            f"running", rounds)
    grow = rounds[1]["peak"] - rounds[0]["peak"]
    assert grow < 32 << 10, (
        f"agent RSS peak grew {grow >> 10} MiB from the first overflow to "
        f"the second", rounds)
    hook_us = (1 / rounds[0]["stopped_rate"] - 1 / base_rate) * 1e6
    note(f"ring-buffer overflow: app loop {base_rate / 1e3:.0f}k calls/s "
         f"unprobed, {running / 1e3:.0f}k probed with the agent running, "
         f"{rounds[0]['stopped_rate'] / 1e3:.0f}k/"
         f"{rounds[1]['stopped_rate'] / 1e3:.0f}k with it stopped "
         f"(~{hook_us:.1f} us per call for 2 probed calls); ringbuf drops per "
         f"probe per 4 s stop: {rounds[0]['drops']} / {rounds[1]['drops']}; "
         f"agent RSS {rss_start >> 10} MiB at start, peak "
         f"{rounds[0]['peak'] >> 10} / {rounds[1]['peak'] >> 10} MiB; "
         f"answered {rounds[0]['answered']:.1f} s after SIGCONT")


# == 5 ==

DI_LOG = {
    "slow": r"timed out|timeout",
    "reset": r"reset|receiving|peer|connection|empty reply",
    "500": r"HTTP 500",
    "invalid_json": r"invalid JSON|invalid response",
    "huge": r"larger than",
    "chunked": r"larger than|timed out",
}
DI_TIMEOUT_MS = 3000
DI_BACKOFF_MAX_S = 10        # a failing poll's retry: at most 10x the 1 s interval
DI_MAX_RESPONSE_MB = 16     # the agent's cap on a DI API answer (agent.c)
EXPORT_TIMEOUT_S = 10       # the exporter's request timeout (agent.c)


def test_hostile_di_api_and_collector(world):
    """The DI API and the OTLP collector both answer as an attacker or a
    broken proxy would, one behaviour after another. Each request the agent
    makes ends within its timeout, reads at most its response cap (DI API
    16 MiB; the collector's answer is only skimmed), the agent's RSS stays
    near its baseline, each failure is one log line per poll naming what
    went wrong, and the control-socket probe keeps producing snapshots.
    Back to normal, polls and exports succeed again."""
    service = service_name("hostile")
    server = Hostile()
    try:
        agent = world.agent(api_url=server.api_url,
                            otlp_endpoint=server.otlp_url,
                            breakpoint_poll_interval_s=1,
                            probe_poll_interval_s=1,
                            api_timeout_ms=DI_TIMEOUT_MS, batch_max=8)
        app = world.app(service)
        agent.add("--id", "h-work", "--service", service, "--type", "PROBE",
                  f"{M}:work")
        wait_until("snapshots before the hostility", lambda: agent.snapshots(
            "h-work", app.pid), 20, agent.tail)
        wait_until("a DI API poll for the app's service", lambda: server.calls(
            service=service), 10, agent.tail)
        wait_until("an OTLP export", lambda: server.calls(path="/v1/logs"),
                   10, agent.tail)
        time.sleep(1)
        rss_base = agent.rss_kb()
        sampler = RssSampler(agent.pid)
        results = {}
        # The DI API client logs a failure when its reason changes: no two
        # modes with the same reason in a row (huge and chunked are both
        # "larger than").
        for mode in ("slow", "huge", "reset", "500", "chunked",
                     "invalid_json"):
            t0 = time.time()
            log0 = len(agent.stderr())
            server.set_mode(mode)
            done = lambda: [c for c in server.calls(
                since=t0, mode=mode, service=service)
                if c["seconds"] is not None] and [
                c for c in server.calls(since=t0, mode=mode, path="/v1/logs")
                if c["seconds"] is not None]
            wait_until(f"a DI API poll and an export met {mode!r}", done,
                       40, agent.tail)
            assert agent.alive(), agent.tail()
            snaps = agent.snapshots("h-work", app.pid, since=t0)
            assert snaps, (f"no snapshots while the DI API and collector "
                           f"were {mode!r}", agent.tail())
            di = [c for c in server.calls(since=t0, mode=mode, service=service)
                  if c["seconds"] is not None]
            ex = [c for c in server.calls(since=t0, mode=mode, path="/v1/logs")
                  if c["seconds"] is not None]
            # The server counts a request done when it has sent its answer;
            # the agent logs once it has read (or given up on) it. A poller
            # logs only a changed reason (huge, then chunked, say "larger
            # than" again), and the one that will may be in its backoff.
            said = lambda: [l for l in agent.stderr()[log0:].splitlines()
                            if service in l and re.search(DI_LOG[mode], l, re.I)]
            wait_until(f"a log line saying what the DI API did ({mode})", said,
                       DI_BACKOFF_MAX_S * 1.05 + DI_TIMEOUT_MS / 1000 + 5, agent.tail)
            mine = [l for l in agent.stderr()[log0:].splitlines() if service in l]
            results[mode] = {
                "di_s": max(c["seconds"] for c in di),
                "di_mb": max(c["sent"] for c in di) / 2**20,
                "ex_s": max(c["seconds"] for c in ex),
                "ex_mb": max(c["sent"] for c in ex) / 2**20,
                "log_lines": len(mine), "polls": len(di),
                "overlap": max_overlap(server.calls(
                    since=t0, mode=mode, path="/list")),
                "peak_mb": (sampler.peak(since=time.monotonic() - (
                    time.time() - t0)) - rss_base) / 1024}
        server.set_mode("ok")
        t_ok = time.time()
        wait_until("a DI API poll answered again", lambda: server.calls(
            since=t_ok, mode="ok", service=service), 25, agent.tail)
        wait_until("an export accepted again", lambda: server.calls(
            since=t_ok, mode="ok", path="/v1/logs"), 25, agent.tail)
        wait_until("the agent says the DI API is reachable again", lambda:
                   re.search(rf"{re.escape(service)}.*reachable again",
                             agent.stderr()), 10, agent.tail)
        recovered = time.time() - t_ok
        peak = (sampler.stop() - rss_base) / 1024
        exporter_log = [l for l in agent.stderr().splitlines()
                        if l.startswith("pydi: exporter:")]
        assert any(server.otlp_url in l and "POST" in l
                   for l in exporter_log), exporter_log
        assert any("works again" in l for l in exporter_log), exporter_log
        # One line per burst of failures, one when it works again.
        assert len(exporter_log) <= 2 * len(results) + 2, exporter_log
        assert agent.alive(), agent.tail()
        assert agent.snapshots("h-work", app.pid, since=t_ok)
    finally:
        server.stop()
    summary = "; ".join(
        f"{m}: DI {r['di_s']:.1f} s/{r['di_mb']:.1f} MiB, OTLP "
        f"{r['ex_s']:.1f} s/{r['ex_mb']:.1f} MiB, {r['log_lines']} log "
        f"lines/{r['polls']} polls, RSS +{r['peak_mb']:.0f} MiB with "
        f"{r['overlap']} list answers at once" for m, r in results.items())
    note(f"hostile DI API + collector: {summary}; agent RSS baseline "
         f"{rss_base >> 10} MiB; recovered {recovered:.1f} s after")
    for mode, r in results.items():
        assert r["di_s"] <= DI_TIMEOUT_MS / 1000 + 1.5, (mode, r)
        assert r["ex_s"] <= EXPORT_TIMEOUT_S + 1.5, (mode, r)
        assert r["di_mb"] <= 16 + 8, (f"the agent read {r['di_mb']:.0f} MiB "
                                      f"of a DI API answer ({mode})", r)
        assert r["ex_mb"] <= 8, (f"the agent read {r['ex_mb']:.0f} MiB of a "
                                 f"collector answer ({mode})", r)
        assert r["log_lines"] <= 4 * r["polls"] + 4, (
            f"{r['log_lines']} log lines for {r['polls']} polls ({mode})")
        # Every service on this host is polled (other tests' too), at
        # most MAX_POLLS_INFLIGHT (8) at a time, each answer capped at
        # 16 MiB (growing by doubling: 1.5x while it grows).
        bound = 1.5 * DI_MAX_RESPONSE_MB * min(r["overlap"], 8) + 48
        assert r["peak_mb"] <= bound, (
            f"agent RSS rose {r['peak_mb']:.0f} MiB over its baseline with "
            f"{r['overlap']} DI API answers at once ({mode})", r)
    assert peak <= 1.5 * DI_MAX_RESPONSE_MB * 8 + 48, peak


def max_overlap(calls):
    """The most requests that were open at the same moment."""
    edges = sorted([(c["t"], 1) for c in calls] +
                   [(c["t"] + (c["seconds"] or 0), -1) for c in calls])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return max(most, 1)


# == 6 ==

def metric(agent, name):
    return agent.metrics().get(name, 0.0)


def test_jsonl_on_a_full_filesystem(world, workdir):
    """JSON lines into a 512 KiB tmpfs filled up: writes fail, the failed
    snapshots are counted (pydi_export_drops_total{reason="write_failed"}),
    the agent says so once and keeps running and capturing; space back,
    lines flow again, every line in the file whole."""
    mnt = os.path.join(workdir, "small")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755",
                    "tmpfs", mnt], check=True)
    try:
        port = free_port()
        service = service_name("full")
        agent = world.agent(jsonl=os.path.join(mnt, "agent.jsonl"),
                            metrics_listen=f"127.0.0.1:{port}")
        app = world.app(service)
        agent.add("--id", "full-work", "--service", service, "--type",
                  "PROBE", "--rate", "50", f"{M}:work")
        wait_until("snapshots written", lambda: agent.snapshots(
            "full-work", app.pid), 20, agent.tail)
        filler = os.path.join(mnt, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        t_full = time.time()
        drops0 = metric(agent, 'pydi_export_drops_total{reason="write_failed"}')
        wait_until("write_failed drops counted", lambda: metric(
            agent, 'pydi_export_drops_total{reason="write_failed"}') > drops0 + 20,
            20, agent.tail, interval=0.5)
        size_full = os.path.getsize(agent.jsonl_path)
        time.sleep(2)
        assert agent.alive(), agent.tail()
        proc = agent.process("full-work", app.pid)
        assert proc and proc["status"] == "ACTIVE", proc
        log = agent.stderr()
        said = [l for l in log.splitlines() if "dropping lines" in l]
        assert len(said) == 1, ("one log line when writes start failing",
                                said, log[-3000:])
        dropped = metric(agent, 'pydi_export_drops_total{reason="write_failed"}')
        os.unlink(filler)
        t_free = time.time()
        wait_until("snapshots written again after space returned", lambda:
                   os.path.getsize(agent.jsonl_path) > size_full + 4096, 20,
                   agent.tail)
        wait_until("the agent says writes work again", lambda:
                   "again" in agent.stderr()[len(log):], 10, agent.tail)
        with open(agent.jsonl_path, "rb") as f:
            raw = f.read()
        assert raw.endswith(b"\n"), raw[-200:]
        for line in raw.splitlines():
            json.loads(line)        # whole lines only, none cut short
        assert agent.snapshots("full-work", app.pid, since=t_free)
        note(f"full tmpfs: {dropped - drops0:.0f} snapshots counted "
             f"write_failed in {t_free - t_full:.1f} s, one log line, lines "
             f"whole, writes resumed after space returned")
        assert agent.stop() == 0, agent.tail()
    finally:
        for a in world.agents:
            a.close()
        subprocess.run(["umount", "-l", mnt], check=False)




# == 7 ==

def test_trace_on_the_agents_function_leaves_the_agent_capturing(world):
    """On 3.11 a second probe on a function makes the helper build one new
    hooked code object for both, so the agent's BPF keys name a code object
    no longer called; the agent follows the helper's hooks (its
    once-a-second pass asks after any helper command) and re-keys."""
    agent = world.agent()
    a = world.app(service_name("shared"))
    agent.add("--id", "shared-work", "--pid", str(a.pid), "--type", "PROBE",
              f"{M}:work")
    wait_until("READY", lambda: agent.statuses("shared-work", a.pid, "READY"),
               20, agent.tail)
    wait_until("snapshots", lambda: agent.snapshots("shared-work", a.pid), 10,
               agent.tail)
    trace = subprocess.Popen([PYDI, "-j", "trace", "-p", str(a.pid), f"{M}:work",
                              "--timeout", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(trace.stdout.readline())
        assert ready.get("status") == "READY", (ready, trace.stderr.read())
        t_both = time.time()
        wait_until("an agent snapshot while the trace is hooked too", lambda:
                   agent.snapshots("shared-work", a.pid, taken_since=t_both),
                   6, agent.tail)
        # Settled: each has followed the codes once; asking for the hooks
        # list again (built under the target's GIL) waits for a change.
        before = helper_state(a.pid)["commands_run"]
        time.sleep(2.5)
        assert helper_state(a.pid)["commands_run"] == before, (
            "commands sent to the helper while nothing changed")
        out, err = trace.communicate(timeout=20)
    finally:
        if trace.poll() is None:
            trace.kill()
            trace.wait()
    assert trace.returncode == 0, err
    assert '"type":"snapshot"' in out.replace(" ", ""), (out[-2000:], err)
    t_alone = time.time()
    wait_until("an agent snapshot after the trace has gone", lambda:
               agent.snapshots("shared-work", a.pid, taken_since=t_alone),
               6, agent.tail)
    assert agent.process("shared-work", a.pid)["status"] == "ACTIVE"
    assert helper_state(a.pid)["hooks_active"] == 1
    assert agent.stop() == 0, agent.tail()
    note("a trace on the agent's function: the agent kept capturing while "
         "both were hooked and after the trace had gone")


def test_pid_of_a_process_that_is_not_python_is_an_error(world):
    """`probe add --pid P` where P runs no CPython: the probe reports ERROR
    (LANGUAGE_MISMATCH, the message naming P's binary) and lists P with it,
    instead of listing no process at all; P and the agent are untouched,
    and P's exit takes it off the list."""
    agent = world.agent()
    other = subprocess.Popen(["sleep", "600"])
    try:
        probe_id = f"not-python-{other.pid}"
        agent.add("--id", probe_id, "--pid", str(other.pid), "--type", "PROBE",
                  f"{M}:work")
        wait_until("ERROR for the non-Python pid", lambda: agent.statuses(
            probe_id, other.pid, "ERROR"), 20, agent.tail)
        status = agent.statuses(probe_id, other.pid, "ERROR")[0]
        assert status.get("error_cause") == "LANGUAGE_MISMATCH", status
        assert "(sleep) is not a CPython process" in status.get("message", ""), status
        assert agent.status_of(probe_id, other.pid) == "ERROR", agent.probe_list()
        time.sleep(1.5)     # a few sweeps: the ERROR is not retried into anything else
        assert {s["status"] for s in agent.statuses(probe_id, other.pid)} == {"ERROR"}
        assert other.poll() is None, "the named process was harmed"
        assert not [m for m in open(f"/proc/{other.pid}/maps")
                    if "pydi" in m], "something of pydi's was mapped into it"
    finally:
        other.kill()
        other.wait()
    wait_until("the exited process off the probe's list", lambda: agent.process(
        probe_id, other.pid) is None, 20, agent.tail)
    assert agent.alive(), agent.tail()
    note("probe add --pid of a non-Python process (sleep): ERROR "
         "LANGUAGE_MISMATCH naming its binary, listed until it exits")
