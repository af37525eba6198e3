"""Stress: inject-or-reuse -> resolve -> revert, many times, into live
services under real HTTP load, through the real pydi binary (issue 3).

Scenarios: (a) a uvicorn/FastAPI server on the host's 3.11, (b) a
single-threaded loop busy in Python holding the GIL (first injection by
pending call), (c) a server with 8 worker threads, (d) uvicorn servers on
3.13 (Starlette) and 3.14 (FastAPI) in the namespaced forky root. Each
holds: the target stays alive, no request fails, its descriptor count after
the first injection equals the count at the end, its RSS grows by less than
5 MiB over the cycles. Then fresh processes (parked and busy), one injection
each, and three pydi processes on one target at once.

PYDI_STRESS_CYCLES (default 500) and PYDI_STRESS_FRESH (default 30) scale it.
"""
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import (HERE, HOST_PYTHON, PYDI, Target, report, run_pydi,
                      spawn_host, spawn_in_rootfs)

CYCLES = int(os.environ.get("PYDI_STRESS_CYCLES", "500"))
FRESH = int(os.environ.get("PYDI_STRESS_FRESH", "30"))
RSS_GROWTH_LIMIT_KIB = 5 * 1024
PYDI_TIMEOUT = 60          # one pydi run; a hang fails instead of blocking
LOAD_CONNECTIONS = {"asgi": 4, "threaded": 8}
BUSY_MAX_STALL_S = 2.0     # the busy loop may pause for our calls, not stop

TARGETS = os.path.join(HERE, "targets")
LOAD = os.path.join(TARGETS, "stress_load.py")
ASGI = os.path.join(TARGETS, "stress_asgi.py")
THREADED = os.path.join(TARGETS, "stress_threaded.py")
BUSY = os.path.join(TARGETS, "stress_busy.py")
IDLE = os.path.join(TARGETS, "idle.py")
SIGNALS = os.path.join(TARGETS, "stress_signals.py")


# --- the target, seen from outside -----------------------------------------

def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def helper_fds(pid):
    """Descriptors still pointing at the helper's memfd (the bootstrap
    closes it once loaded; the mapping stays)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if "pydi-helper" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                found.append(fd)
        except FileNotFoundError:
            pass
    return found


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"pid {pid}: no VmRSS")


def thread_count(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def process_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


# --- pydi --------------------------------------------------------------------

def pydi_ok(*args):
    """Run pydi -j ARGS; the parsed reply, asserting exit 0 and ok."""
    rc, out, err = run_pydi("-j", *args, timeout=PYDI_TIMEOUT)
    assert rc == 0, f"pydi {' '.join(args)} exited {rc}: {err.strip()} {out.strip()}"
    reply = json.loads(out)
    assert reply.get("ok") is True, f"pydi {' '.join(args)}: {reply}"
    return reply


def one_cycle(pid, resolve_target, qualname):
    """inject (reused: the helper is resident) -> resolve -> revert."""
    hello = pydi_ok("inject", str(pid))
    assert hello["inject_path"] == "reused", hello
    resolved = pydi_ok("resolve", "-p", str(pid), resolve_target)
    assert [c["qualname"] for c in resolved["codes"]] == [qualname], resolved
    pydi_ok("revert", str(pid))


# --- load --------------------------------------------------------------------

class LoadGen:
    """stress_load.py in its own process: keep-alive connections hammering
    the target, counting what fails."""

    def __init__(self, port, connections, path="/"):
        self.target = Target([HOST_PYTHON, LOAD, str(port), str(connections),
                              path])

    def _ask(self, word):
        self.target.proc.stdin.write(word + "\n")
        self.target.proc.stdin.flush()
        return json.loads(self.target.proc.stdout.readline())

    def wait_for(self, ok, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            stats = self._ask("stats")
            if stats["ok"] >= ok or stats["failed"]:
                return stats
            time.sleep(0.05)
        raise AssertionError(f"load: fewer than {ok} requests in {timeout} s")

    def pause(self):
        return self._ask("pause")

    def resume(self):
        return self._ask("resume")

    def stop(self):
        self.target.proc.stdin.close()
        stats = json.loads(self.target.proc.stdout.readline())
        self.target.proc.wait(timeout=30)
        return stats


class Progress:
    """Reads the busy target's step counter off its stdout."""

    def __init__(self, target):
        self.samples = []
        self.thread = threading.Thread(target=self._read, args=(target,),
                                       daemon=True)
        self.thread.start()

    def _read(self, target):
        for line in target.proc.stdout:
            self.samples.append((time.monotonic(), int(line)))

    def last(self):
        return self.samples[-1][1] if self.samples else 0

    def wait_past(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.last() > count:
                return self.last()
            time.sleep(0.01)
        raise AssertionError(f"the busy loop is stuck at {self.last()}")

    def max_gap(self, since):
        times = [t for t, _ in self.samples if t >= since]
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)


# --- one scenario ------------------------------------------------------------

def run_scenario(name, target, pid, resolve_target, qualname, load=None,
                 progress=None):
    """First injection, then CYCLES cycles; returns the facts and reports
    them."""
    try:
        if load:
            load.wait_for(200)
        start = time.monotonic()
        first = pydi_ok("inject", str(pid))
        inject_ms = first["inject_ms"]
        if load:
            load.pause()
        fd_before, rss_before = fd_count(pid), rss_kib(pid)
        if load:
            load.resume()
        progress_before = progress.wait_past(0) if progress else None

        cycles_start = time.monotonic()
        done = 0
        for done in range(1, CYCLES + 1):
            one_cycle(pid, resolve_target, qualname)
            assert process_alive(pid), f"{name}: target died in cycle {done}"
        cycles_s = time.monotonic() - cycles_start

        stats = load.pause() if load else None
        fd_after, rss_after = fd_count(pid), rss_kib(pid)
        alive = process_alive(pid) and target.alive()
        threads = thread_count(pid)
        busy = ""
        if progress:
            progress.wait_past(progress.last())
            busy = (f" steps={progress.last() - progress_before}"
                    f" max_stall={progress.max_gap(cycles_start):.2f}s")
        if load:
            stats = load.stop()
        served = stats["ok"] if stats else 0
        failed = stats["failed"] if stats else 0
        report(f"stress {name}: cycles={done} first_inject={first['inject_path']}"
               f" ({inject_ms:.1f} ms) requests={served} failed={failed}"
               f"{' max_latency=%sms' % stats['max_latency_ms'] if stats else ''}"
               f" fd={fd_before}->{fd_after} rss={rss_before}->{rss_after}KiB"
               f" (+{rss_after - rss_before}) threads={threads}{busy}"
               f" alive={alive} cycle={cycles_s / max(done, 1) * 1e3:.1f}ms"
               f" total={time.monotonic() - start:.1f}s")
        assert alive, f"{name}: the target died"
        if stats:
            assert failed == 0, f"{name}: {failed} failed requests: {stats['errors']}"
            assert served > 0
        assert fd_after == fd_before, f"{name}: descriptors {fd_before} -> {fd_after}"
        assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB, \
            f"{name}: RSS grew {rss_after - rss_before} KiB"
        if progress:
            assert progress.max_gap(cycles_start) < BUSY_MAX_STALL_S
        return first
    finally:
        if load and load.target.alive():
            load.target.proc.kill()
            load.target.proc.wait()


def port_of(target):
    words = target.handshake.split()
    assert words[0] == "port", target.handshake
    return int(words[1])


def test_stress_fastapi_idle():
    """(a) uvicorn + FastAPI on 3.11: the main thread parks in epoll_wait."""
    target = spawn_host(ASGI, "fastapi")
    try:
        load = LoadGen(port_of(target), LOAD_CONNECTIONS["asgi"])
        first = run_scenario("fastapi-3.11", target, target.pid,
                             "__main__:index", "index", load=load)
        assert first["inject_path"] == "gil-free", first
    finally:
        target.stop()


def test_stress_busy_loop():
    """(b) single-threaded, busy in Python: no thread to borrow, so the
    first injection is a pending call; later commands take the GIL from the
    loop at the switch interval. The loop keeps counting throughout."""
    target = spawn_host(BUSY)
    try:
        progress = Progress(target)
        first = run_scenario("busy-3.11", target, target.pid, "__main__:step",
                             "step", progress=progress)
        assert first["inject_path"] == "pending-call", first
    finally:
        target.proc.kill()
        target.proc.wait()


def test_stress_threaded_server():
    """(c) 8 worker threads, each on a keep-alive connection doing CPU work
    under the GIL while the helper's thread competes for it."""
    target = spawn_host(THREADED)
    try:
        assert thread_count(target.pid) >= 9, target.handshake
        load = LoadGen(port_of(target), LOAD_CONNECTIONS["threaded"])
        first = run_scenario("threaded8-3.11", target, target.pid,
                             "__main__:Handler.do_GET", "Handler.do_GET",
                             load=load)
        assert first["inject_path"] == "gil-free", first
    finally:
        target.stop()


@pytest.mark.parametrize("python,framework", [("python3.13", "starlette"),
                                              ("python3.14", "fastapi")])
def test_stress_rootfs(rootfs, python, framework):
    """(d) uvicorn in the namespaced forky root (its own mount and pid
    namespace, our container); FastAPI only imports under 3.14 there."""
    target = spawn_in_rootfs(rootfs, f"/usr/bin/{python}", ASGI, framework)
    try:
        load = LoadGen(port_of(target), LOAD_CONNECTIONS["asgi"])
        first = run_scenario(f"{framework}-{python[6:]}", target, target.pid,
                             "__main__:index", "index", load=load)
        assert first["inject_path"] == "gil-free", first
    finally:
        target.stop()


# --- fresh processes ---------------------------------------------------------

def wait_helper_fd_closed(pid, timeout=2.0):
    deadline = time.monotonic() + timeout
    while helper_fds(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return helper_fds(pid)


def signals_handled(target):
    target.proc.stdin.write("count\n")
    target.proc.stdin.flush()
    return int(target.proc.stdout.readline())


@pytest.mark.parametrize("kind", ["parked", "parked-signals"])
def test_fresh_parked(kind):
    """FRESH new processes parked in read(): one GIL-free injection each.
    parked-signals takes 1000 SIGALRM a second while parked: the injector
    must still find it parked (it used to give up on 1 try in 10) and the
    signals that arrive during our calls must still be delivered."""
    script = IDLE if kind == "parked" else SIGNALS
    paths, times = [], []
    start = time.monotonic()
    for i in range(FRESH):
        target = spawn_host(script)
        try:
            fds = fd_count(target.pid)
            hello = pydi_ok("inject", str(target.pid))
            paths.append(hello["inject_path"])
            times.append(hello["inject_ms"])
            assert hello["inject_path"] == "gil-free", hello
            assert not wait_helper_fd_closed(target.pid), f"process {i}: memfd left open"
            # The helper keeps exactly its two eventfds.
            assert fd_count(target.pid) == fds + 2, f"process {i}"
            if script == SIGNALS:
                before = signals_handled(target)
                time.sleep(0.05)
                assert signals_handled(target) > before, f"process {i}: signals stopped"
            assert target.alive(), f"process {i} died"
        finally:
            target.stop()
        assert target.proc.returncode == 0, f"process {i} exited {target.proc.returncode}"
    report(f"stress fresh-{kind}: processes={FRESH} injected={len(paths)}"
           f" paths={sorted(set(paths))} inject_ms max={max(times):.1f}"
           f" mean={sum(times) / len(times):.1f} total={time.monotonic() - start:.1f}s")


def test_fresh_busy():
    """FRESH new single-threaded busy processes: one pending-call injection
    each; each keeps counting afterwards."""
    paths, times = [], []
    start = time.monotonic()
    for i in range(FRESH):
        target = spawn_host(BUSY)
        try:
            progress = Progress(target)
            progress.wait_past(0)
            fds = fd_count(target.pid)
            hello = pydi_ok("inject", str(target.pid))
            paths.append(hello["inject_path"])
            times.append(hello["inject_ms"])
            assert hello["inject_path"] == "pending-call", hello
            after = progress.wait_past(progress.last())
            progress.wait_past(after)
            assert not wait_helper_fd_closed(target.pid), f"process {i}: memfd left open"
            assert fd_count(target.pid) == fds + 2, f"process {i}"
            assert process_alive(target.pid), f"process {i} died"
        finally:
            target.proc.kill()
            target.proc.wait()
    report(f"stress fresh-busy: processes={FRESH} injected={len(paths)}"
           f" paths={sorted(set(paths))} inject_ms max={max(times):.1f}"
           f" mean={sum(times) / len(times):.1f} total={time.monotonic() - start:.1f}s")


# --- several pydi processes on one target ------------------------------------

def test_concurrent_clients():
    """Three pydi processes at once on one target: a fresh injection is done
    once (the others wait and reuse it), and overlapping commands each get
    their own reply (the channel has one slot; without the per-target lock
    two clients took the same sequence number and one waited 10 s)."""
    target = spawn_host(THREADED)
    try:
        pid = str(target.pid)
        runs = [subprocess.Popen([PYDI, "-j", "inject", pid], text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(3)]
        paths = sorted(json.loads(p.communicate(timeout=PYDI_TIMEOUT)[0])["inject_path"]
                       for p in runs)
        assert paths == ["gil-free", "reused", "reused"], paths

        rounds = CYCLES // 5 or 1
        targets = {"work": "__main__:work", "Handler.do_GET": "__main__:Handler.do_GET",
                   "main": "__main__:main"}
        loop = ("for i in $(seq %d); do %s -j resolve -p %s %s || exit 1; done")
        start = time.monotonic()
        shells = {q: subprocess.Popen(["sh", "-c", loop % (rounds, PYDI, pid, t)],
                                      text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
                  for q, t in targets.items()}
        for qualname, shell in shells.items():
            out, err = shell.communicate(timeout=PYDI_TIMEOUT * 5)
            assert shell.returncode == 0, f"{qualname}: {err.strip()}"
            replies = [json.loads(line) for line in out.splitlines()]
            assert len(replies) == rounds
            wrong = [r for r in replies
                     if [c["qualname"] for c in r["codes"]] != [qualname]]
            assert not wrong, f"{qualname}: got another client's reply: {wrong[0]}"
        took = time.monotonic() - start
        assert target.alive()
        report(f"stress concurrent-clients: injections={paths}"
               f" resolves={rounds}x{len(targets)} in parallel, all their own"
               f" replies, {took:.1f}s")
    finally:
        target.stop()
