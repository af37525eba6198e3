"""The soak run behind scripts/soak: see that script for what it does.

    /usr/bin/python3 scripts/soak.py --pydi PATH [MINUTES]

The app is contract-tests/apps/agent_app.py (FastAPI under uvicorn, named by
OTEL_SERVICE_NAME so the agent finds it). wrk drives its four routes; a
checker thread sends a few requests a second of its own and checks every
answer's content. Every second a probe is added over the control socket
(rotating over function probes, a sub-dependency and a line probe) and the
one added the second before is deleted.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "contract-tests", "apps", "agent_app.py")
PYTHON = "/usr/bin/python3"
SAMPLE_S = 5

WRK_LUA = r"""
local paths = {"/sync/%d", "/async/%d", "/dep/%d?scale=3", "/lines/%d"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", string.format(paths[(n % 4) + 1], n))
end
"""


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def line_of(marker):
    with open(APP) as f:
        for number, text in enumerate(f, 1):
            if f"# LINE:{marker}" in text:
                return number
    raise SystemExit(f"no LINE:{marker} in {APP}")


def slope_per_10min(samples):
    """Least-squares slope of (t s, MiB) in MiB per 10 minutes."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    return 600 * sum((t - mt) * (v - mv) for t, v in samples) / den if den else 0.0


class Checker(threading.Thread):
    """A few requests a second, each answer checked."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.failures = []
        self.stopping = threading.Event()

    def one(self, n):
        cases = [(f"/sync/{n}", {"n": n, "doubled": 2 * n}),
                 (f"/async/{n}", {"n": n, "tripled": 3 * n}),
                 (f"/dep/{n}?scale=3", {"n": n, "value": 3 * n}),
                 (f"/lines/{n}", {"n": n, "squared": n * n, "cubed": n ** 3,
                                  "total": n * n + n ** 3})]
        path, want = cases[n % 4]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or json.loads(body) != want:
                return f"GET {path}: {resp.status} {body[:200]!r}"
        except Exception as e:      # noqa: BLE001 -- every failure counts
            return f"GET {path}: {type(e).__name__}: {e}"
        finally:
            conn.close()
        return None

    def run(self):
        n = 10_000_000
        while not self.stopping.is_set():
            n += 1
            error = self.one(n)
            if error:
                self.failures.append((time.time(), error))
            else:
                self.ok += 1
            time.sleep(0.1)


class Churn(threading.Thread):
    """Every second: add the next probe, delete the one before."""

    def __init__(self, pydi, socket_path, service):
        super().__init__(daemon=True)
        self.pydi = pydi
        self.socket = socket_path
        self.service = service
        self.added = self.deleted = 0
        self.failures = []
        self.latencies = []
        self.stopping = threading.Event()
        line = line_of("lines_after_comment")
        self.targets = [
            ("PROBE", "agent_app:sync_route"),
            ("PROBE", "agent_app:async_route"),
            ("PROBE", "agent_app:get_repo"),
            ("PROBE", "agent_app:get_store"),
            ("BREAKPOINT", f"agent_app:lines_route@{line}"),
            ("PROBE", "agent_app:dep_route"),
        ]
        self.live = []

    def pydi_probe(self, *args):
        t = time.monotonic()
        proc = subprocess.run([self.pydi, "probe", "--socket", self.socket, *args],
                              capture_output=True, text=True, timeout=60)
        self.latencies.append(time.monotonic() - t)
        if proc.returncode != 0:
            self.failures.append((time.time(), args[0], proc.stderr.strip()))
            return False
        return True

    def run(self):
        k = 0
        while not self.stopping.wait(1.0):
            kind, target = self.targets[k % len(self.targets)]
            probe_id = f"soak-{k}"
            extra = ["--max-hits", "1000000"] if kind == "BREAKPOINT" else []
            if self.pydi_probe("add", "--id", probe_id, "--type", kind,
                               "--service", self.service, *extra, target):
                self.added += 1
                self.live.append(probe_id)
            while len(self.live) > 1:
                if self.pydi_probe("del", self.live.pop(0)):
                    self.deleted += 1
            k += 1

    def finish(self):
        self.stopping.set()
        self.join(timeout=120)
        for probe_id in self.live:
            if self.pydi_probe("del", probe_id):
                self.deleted += 1
        self.live = []


def parse_wrk(text):
    out = {"requests": 0, "non2xx": 0, "socket_errors": 0, "rps": 0.0,
           "latency": {}}
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct, value in re.findall(r"^\s+(50|99)%\s+(\S+)$", text, re.M):
        out["latency"][pct] = value
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pydi", required=True)
    ap.add_argument("minutes", nargs="?", type=float, default=30.0)
    ap.add_argument("--no-probes", action="store_true",
                    help="the agent runs, no probe is added: a baseline")
    opts = ap.parse_args()
    seconds = int(opts.minutes * 60)
    work = tempfile.mkdtemp(prefix="pydi-soak-")
    service = f"pydi-soak-{os.getpid()}"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
           "OTEL_SERVICE_NAME": service}
    app = subprocess.Popen([PYTHON, APP], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, env=env)
    hello = app.stdout.readline().strip()
    m = re.fullmatch(r"port (\d+)", hello)
    if not m:
        raise SystemExit(f"soak: the app did not start: {hello!r}")
    port = int(m.group(1))

    sock = os.path.join(work, "agent.sock")
    jsonl = os.path.join(work, "agent.jsonl")
    config = os.path.join(work, "agent.json")
    with open(config, "w") as f:
        json.dump({"jsonl": jsonl, "control_socket": sock}, f)
    agent_err = open(os.path.join(work, "agent.stderr"), "w")
    agent_env = {k: v for k, v in os.environ.items()
                 if not k.startswith(("OTEL_", "PYDI_CONTROL"))}
    agent = subprocess.Popen([opts.pydi, "agent", "--config", config],
                             stdin=subprocess.DEVNULL, stdout=agent_err,
                             stderr=agent_err, env=agent_env)
    deadline = time.time() + 60
    while not os.path.exists(sock):
        if time.time() > deadline or agent.poll() is not None:
            raise SystemExit("soak: the agent did not start")
        time.sleep(0.1)

    lua = os.path.join(work, "routes.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    print(f"soak: {opts.minutes:g} min of wrk on http://127.0.0.1:{port} "
          f"(pid {app.pid}), agent pid {agent.pid}, probes added and removed "
          f"every second; files in {work}", flush=True)
    samples = {"agent": [], "app": []}
    t0 = time.time()
    checker = Checker(port)
    churn = Churn(opts.pydi, sock, service)
    wrk = subprocess.Popen(["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency",
                            "--timeout", "10s", "-s", lua,
                            f"http://127.0.0.1:{port}"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    checker.start()
    if not opts.no_probes:
        churn.start()
    next_print = t0 + 60
    while wrk.poll() is None:
        now = time.time()
        samples["agent"].append((now - t0, rss_mib(agent.pid)))
        samples["app"].append((now - t0, rss_mib(app.pid)))
        if now >= next_print:
            print(f"  {int((now - t0) / 60)} min: agent {samples['agent'][-1][1]:.1f}"
                  f" MiB, app {samples['app'][-1][1]:.1f} MiB, probes "
                  f"+{churn.added}/-{churn.deleted}, checked {checker.ok}, "
                  f"failed {len(checker.failures)}", flush=True)
            next_print += 60
        time.sleep(SAMPLE_S)
    wrk_out = wrk.stdout.read()
    if not opts.no_probes:
        churn.finish()
    checker.stopping.set()
    checker.join(timeout=30)
    time.sleep(2)

    # The app's code is original again once every probe is deleted.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/_debug/state")
    state = json.loads(conn.getresponse().read())
    conn.close()
    original = all(c["now"] == c["original"] for c in state["codes"].values())
    agent_alive = agent.poll() is None
    agent.send_signal(signal.SIGTERM)
    try:
        agent_rc = agent.wait(timeout=30)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent_rc = "hung"
    app.stdin.close()
    try:
        app.wait(timeout=10)
    except subprocess.TimeoutExpired:
        app.kill()

    statuses = {}
    snapshots = 0
    with open(jsonl) as f:
        for line in f:
            obj = json.loads(line)
            if obj.get("type") == "snapshot":
                snapshots += 1
            elif obj.get("type") == "status":
                statuses[obj["status"]] = statuses.get(obj["status"], 0) + 1
    w = parse_wrk(wrk_out)
    failed = w["non2xx"] + w["socket_errors"] + len(checker.failures)

    def rss_line(name):
        s = samples[name]
        warm = [x for x in s if x[0] >= 60] or s
        half = [x for x in s if x[0] >= s[-1][0] / 2] or s
        return (f"{name} RSS: {s[0][1]:.1f} MiB at start, {warm[0][1]:.1f} after "
                f"1 min, max {max(v for _, v in s):.1f}, {s[-1][1]:.1f} at the end; "
                f"slope over the second half {slope_per_10min(half):+.2f} MiB/10 min")

    lat = sorted(churn.latencies)
    print(f"soak summary ({opts.minutes:g} minutes"
          f"{', no probes' if opts.no_probes else ''}):")
    print(f"  wrk: {w['requests']} requests ({w['rps']:.0f}/s), non-2xx "
          f"{w['non2xx']}, socket errors {w['socket_errors']}, latency p50 "
          f"{w['latency'].get('50', '?')} p99 {w['latency'].get('99', '?')}")
    print(f"  checker: {checker.ok} answers checked, {len(checker.failures)} wrong")
    for t, e in checker.failures[:5]:
        print(f"    {t - t0:.0f} s: {e}")
    print(f"  probes: {churn.added} added, {churn.deleted} deleted, "
          f"{len(churn.failures)} commands failed; pydi probe p50 "
          f"{lat[len(lat) // 2] * 1000 if lat else 0:.0f} ms, max "
          f"{lat[-1] * 1000 if lat else 0:.0f} ms")
    for t, what, e in churn.failures[:5]:
        print(f"    {t - t0:.0f} s: {what}: {e}")
    print(f"  statuses {statuses}, {snapshots} snapshots")
    print("  " + rss_line("agent"))
    print("  " + rss_line("app"))
    print(f"  failed requests: {failed}; app code original at the end: "
          f"{original}; agent alive at the end: {agent_alive}, exit {agent_rc} "
          f"after SIGTERM")
    ok = (failed == 0 and not churn.failures and original and agent_alive
          and agent_rc == 0)
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"  kept {work} (agent.stderr, agent.jsonl)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
