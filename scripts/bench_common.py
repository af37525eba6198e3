"""What the benchmark items of scripts/bench share: the run context, the
processes they drive (an app target, `pydi trace`, `pydi agent`), numbers
and formatting, and the sections of BENCHMARKS.md."""
import datetime
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
APP = os.path.join(SCRIPTS, "bench_app.py")
BENCHMARKS = os.path.join(ROOT, "BENCHMARKS.md")


class Ctx:
    """The run: pydi (a private copy), the helper, Python, rounds, scratch."""

    def __init__(self, pydi, helper_dir, python, runs, quick, build_dir):
        self.pydi = pydi
        self.helper_dir = helper_dir
        self.python = python
        self.runs = runs
        self.quick = quick
        self.build_dir = build_dir
        self.scratch = tempfile.mkdtemp(prefix="pydi-bench-")
        self.tree = tree()  # at the start: others may commit while this runs
        # A service name no one else's agent or config uses.
        self.service = f"pydi-bench-{os.getpid()}"
        self.python_version = subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True, text=True, check=True).stdout.strip()

    def path(self, *names):
        return os.path.join(self.scratch, *names)


# --- numbers -----------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_ns(ns):
    if ns != ns:
        return "n/a"
    if abs(ns) >= 10_000_000:
        return f"{ns / 1e6:,.0f} ms"
    if abs(ns) >= 1_000_000:
        return f"{ns / 1e6:,.1f} ms"
    if abs(ns) >= 10_000:
        return f"{ns / 1000:,.1f} µs"
    if abs(ns) >= 1000:
        return f"{ns / 1000:,.2f} µs"
    return f"{ns:,.0f} ns"


def fmt_ms(ms):
    return "n/a" if ms != ms else (f"{ms:,.0f} ms" if abs(ms) >= 100 else f"{ms:,.1f} ms")


def spread(xs, fmt):
    return f"{fmt(min(xs))} – {fmt(max(xs))}" if xs else "n/a"


# --- the machine -----------------------------------------------------------

def loadavg():
    with open("/proc/loadavg") as load:
        return load.read().split()[0]


def machine():
    model = "?"
    with open("/proc/cpuinfo") as cpu:
        for text in cpu:
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    distro = "?"
    try:
        with open("/etc/os-release") as rel:
            for text in rel:
                if text.startswith("PRETTY_NAME="):
                    distro = text.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return model, distro


def tree():
    """The commit measured, and whether pydi's sources differed from it."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True,
                              text=True).stdout.strip()
    head = git("log", "-1", "--format=%h %s")[:72] or "?"
    dirty = git("status", "--porcelain", "--", "agent", "bpf", "userspace-rebind",
                "CMakeLists.txt")
    return f"`{head}`" + (" with uncommitted changes to pydi's sources" if dirty else "")


# Mitigations that put work on kernel entries, indirect calls or returns,
# which the uprobe trap and the BPF programs pay; they differ between the
# machines these benchmarks have run on.
MITIGATIONS = ("spectre_v2", "spec_rstack_overflow", "retbleed")


def mitigations():
    found = []
    for name in MITIGATIONS:
        try:
            with open(f"/sys/devices/system/cpu/vulnerabilities/{name}") as f:
                found.append(f"{name}: {f.read().strip()}")
        except OSError:
            pass
    return "; ".join(found) or "unknown"


def header(ctx, started, load_start, rounds=None):
    """The lines every section starts with: when, where, on what."""
    model, distro = machine()
    return [
        f"- measured: {started:%Y-%m-%d %H:%M} UTC, {rounds or ctx.runs} rounds, "
        "configurations interleaved",
        f"- tree: {ctx.tree}",
        f"- machine: {model}, {os.cpu_count()} CPUs; {distro}; kernel {platform.release()}",
        f"- kernel's CPU mitigations: {mitigations()}",
        f"- target: {ctx.python} (Python {ctx.python_version}); pydi built in "
        f"`{os.path.relpath(ctx.build_dir, ROOT)}` (Release, no sanitizers)",
        f"- load average (1 min) at start / end: {load_start} / {loadavg()} "
        "(other work on this shared machine inflates absolute numbers; compare within a table)",
    ]


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


# --- BENCHMARKS.md -------------------------------------------------------------

INTRO = """# Benchmarks

Written by `scripts/bench` (issue 7). A benchmark, not a test: it never gates CI
and never fails on a missed target. The machine is small (2 CPUs) and shared,
so the claims are ratios and differences measured side by side in one run,
configurations interleaved (A B A B ...), each reported as the median and the
min–max over the rounds. `scripts/bench ITEM...` (e.g. `scripts/bench 1 5`) runs
a subset and rewrites only those sections; every section says when and where it
was measured and how to reproduce each row.
"""

SECTION_ORDER = ["1", "1h", "1i", "2-3", "4", "5", "6", "7"]


def write_section(key, text, path=BENCHMARKS):
    """Replace the section `key` of BENCHMARKS.md, keeping the others."""
    sections = {}
    try:
        with open(path) as md:
            old = md.read()
    except OSError:
        old = ""
    for m in re.finditer(r"<!-- bench:(\S+) begin -->\n(.*?)<!-- bench:\1 end -->\n",
                         old, re.S):
        sections[m.group(1)] = m.group(2)
    sections[key] = text.rstrip("\n") + "\n"
    out = [INTRO]
    for k in SECTION_ORDER + sorted(set(sections) - set(SECTION_ORDER)):
        if k in sections:
            out.append(f"<!-- bench:{k} begin -->\n{sections[k]}<!-- bench:{k} end -->\n")
    with open(path, "w") as md:
        md.write("\n".join(out))


# --- processes -------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, sig=signal.SIGTERM, timeout=30):
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_ns(pid):
    """On-CPU time of every thread of pid so far (schedstat, ns)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as st:
                    total += int(st.read().split()[0])
            except OSError:
                pass
    except OSError:
        pass
    return total


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as st:
        for text in st:
            if text.startswith(field + ":"):
                return int(text.split()[1])
    return 0


class LineDriven:
    """A target process driven one command per line over stdin/stdout: it
    prints "ready PID" first, then one reply per command ("error ..." on
    failure)."""

    def __init__(self, argv, env, name, script):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=ROOT)
        words = self.proc.stdout.readline().split()
        if not words or words[0] != "ready":
            raise RuntimeError(f"{script} did not start")
        self.pid = int(words[1])

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        if not reply or reply.startswith("error"):
            raise RuntimeError(f"{self.name} {self.pid}: {line!r}: {reply or 'no reply'}")
        return reply

    def run(self, name, n):
        return int(self.ask(f"run {name} {n}").split()[1])


class App(LineDriven):
    """A bench_app.py process."""

    def __init__(self, ctx, functions=50, mode=None, service=None, cpu=None):
        env = dict(os.environ)
        env["OTEL_SERVICE_NAME"] = service or ctx.service
        argv = [ctx.python, APP, "--functions", str(functions)] + ([mode] if mode else [])
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        super().__init__(argv, env, "app", APP)

    def timed(self, name, n):
        """Wall and on-CPU ns of n calls of name in a tight loop."""
        words = self.ask(f"run {name} {n}").split()
        return int(words[1]), int(words[3])

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


COUNTERS = re.compile(
    r"(?P<snapshots>\d+) snapshots; calls (?P<calls>\d+) \(gated off (?P<gated>\d+)\), "
    r"reached BPF (?P<bpf>\d+), dropped: rate (?P<drop_rate>\d+), max-hits (?P<drop_max>\d+), "
    r"ring buffer (?P<drop_ring>\d+)")


class Trace:
    """`pydi -j trace` on a process, up to READY. Its snapshots go to `out`
    (a path) or are drained and discarded; `ready_s` is the time from start
    to the READY line, `ready` that line (parsed)."""

    def __init__(self, pydi, pid, args, out=None, ready_timeout=30):
        self.argv = [pydi, "-j", "trace", "-p", str(pid)] + args
        self.status = []
        self.ready = None
        self.ready_s = None
        self.stderr = b""
        self.out_file = open(out, "wb") if out else None
        start = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=ROOT)
        self.err_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self.err_thread.start()
        got_ready = threading.Event()
        self.out_thread = threading.Thread(target=self._drain, args=(got_ready, start),
                                           daemon=True)
        self.out_thread.start()
        if not got_ready.wait(ready_timeout) or self.ready is None:
            self.stop()
            raise RuntimeError(f"{' '.join(self.argv)}: no READY: {self.status} "
                               f"{self.stderr.decode(errors='replace')}")

    def _read_stderr(self):
        self.stderr = self.proc.stderr.read()

    def _drain(self, got_ready, start):
        out = self.proc.stdout
        while not got_ready.is_set():
            line = out.readline()
            if not line:
                got_ready.set()
                return
            if b'"type":"status"' in line:
                self.status.append(line.decode(errors="replace").strip()[:300])
                if b'"status":"READY"' in line:
                    self.ready_s = time.monotonic() - start
                    self.ready = json.loads(line)
                    got_ready.set()
            if self.out_file:
                self.out_file.write(line)
        fd = out.fileno()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            if self.out_file:
                self.out_file.write(chunk)

    def stop(self):
        stop_process(self.proc, signal.SIGINT)
        self.err_thread.join(5)
        self.out_thread.join(5)
        if self.out_file:
            self.out_file.close()
        match = COUNTERS.search(self.stderr.decode(errors="replace"))
        return {k: int(v) for k, v in match.groupdict().items()} if match else {}


class Agent:
    """`pydi agent` with its own config dir, JSON-lines file and control socket."""

    def __init__(self, ctx, name, configs=None, cpu=None):
        self.ctx = ctx
        self.dir = ctx.path(f"agent-{name}")
        os.makedirs(self.dir, exist_ok=True)
        self.config_dir = os.path.join(self.dir, "conf.d")
        os.makedirs(self.config_dir, exist_ok=True)
        for old in os.listdir(self.config_dir):
            os.unlink(os.path.join(self.config_dir, old))
        self.jsonl = os.path.join(self.dir, "out.jsonl")
        self.socket = os.path.join(self.dir, "agent.sock")
        for stale in (self.jsonl, self.socket):
            if os.path.exists(stale):
                os.unlink(stale)
        settings = {"config_dir": self.config_dir, "jsonl": self.jsonl,
                    "control_socket": self.socket}
        with open(os.path.join(self.dir, "agent.json"), "w") as out:
            json.dump(settings, out)
        if configs is not None:
            self.write_configs("bench", configs)
        self.log = open(os.path.join(self.dir, "agent.log"), "wb")
        argv = [ctx.pydi, "agent", "--config", os.path.join(self.dir, "agent.json")]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log,
                                     cwd=ROOT)
        self.pid = self.proc.pid
        self._offset = 0
        self._partial = b""
        self.statuses = []
        self.snapshot_lines = 0
        deadline = time.monotonic() + 15
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pydi agent did not start: {self.log_text()}")
            time.sleep(0.01)

    def log_text(self):
        with open(os.path.join(self.dir, "agent.log"), "rb") as log:
            return log.read().decode(errors="replace")[-2000:]

    def log_count(self, text):
        """Lines of the agent's log (stderr) that contain text."""
        with open(os.path.join(self.dir, "agent.log"), "rb") as log:
            return sum(1 for line in log if text.encode() in line)

    def write_configs(self, name, configs):
        """Atomically (rename) put a config file in the watched directory."""
        tmp = os.path.join(self.dir, f".{name}.json")
        with open(tmp, "w") as out:
            json.dump(configs, out)
        os.rename(tmp, os.path.join(self.config_dir, f"{name}.json"))

    def read_new(self):
        """Consume new JSON lines: statuses kept, snapshots counted."""
        try:
            with open(self.jsonl, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.startswith(b'{"type":"status"'):
                self.statuses.append(json.loads(line))
            elif b'"type":"snapshot"' in line:
                self.snapshot_lines += 1

    def wait(self, pred, timeout=60, what="statuses"):
        deadline = time.monotonic() + timeout
        while True:
            self.read_new()
            if pred(self.statuses):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent: timed out waiting for {what}; statuses "
                                   f"{[(s['probe'], s['pid'], s['status']) for s in self.statuses][-10:]}"
                                   f"; log: {self.log_text()}")
            time.sleep(0.02)

    def wait_count(self, status, n, timeout=60):
        def enough(sts):
            errors = [s for s in sts if s["status"] == "ERROR"]
            if errors:
                raise RuntimeError(f"agent: probe ERROR: {errors[0]}")
            return len({(s["probe"], s["pid"]) for s in sts if s["status"] == status}) >= n
        self.wait(enough, timeout, f"{n} x {status}")

    def probe(self, *args):
        out = subprocess.run([self.ctx.pydi, "-j", "probe", "--socket", self.socket] + list(args),
                             capture_output=True, text=True, timeout=60)
        if out.returncode:
            raise RuntimeError(f"pydi probe {' '.join(args)}: {out.stdout} {out.stderr}")
        return json.loads(out.stdout) if out.stdout.strip() else {}

    def stop(self):
        stop_process(self.proc, signal.SIGTERM, 60)
        self.log.close()


def probe_config(probe_id, module, function, service=None, pid=None, kind="PROBE",
                 args=True, ret=True, stack=True):
    """A local-source configuration (ADOT's BreakpointConfiguration + pydi's
    Service/Pid keys)."""
    capture = {}
    if args:
        capture["CaptureArguments"] = []
    if ret:
        capture["CaptureReturn"] = True
    if stack:
        capture["CaptureStackTrace"] = True
    cfg = {"LocationHash": probe_id, "InstrumentationType": kind,
           "Location": {"CodeLocation": {"Language": "Python", "CodeUnit": module,
                                         "MethodName": function}},
           "CaptureConfiguration": {"CodeCapture": capture}}
    if service:
        cfg["Service"] = service
    if pid:
        cfg["Pid"] = pid
    return cfg


def log(*words):
    print(*words, flush=True, file=sys.stderr)


def memory(pid):
    """RSS split, in MiB: total (VmRSS), anonymous, file-backed, the part
    that maps BPF maps (ring buffers: their data pages are mapped twice,
    so they count double in RSS), and PSS."""
    out = {"rss": rss_kib(pid) / 1024, "anon": rss_kib(pid, "RssAnon") / 1024,
           "file": rss_kib(pid, "RssFile") / 1024, "bpf_maps": 0.0, "pss": 0.0}
    mapping = None
    with open(f"/proc/{pid}/smaps") as smaps:
        for text in smaps:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", text):
                mapping = text.split(None, 5)[5].strip() if len(text.split(None, 5)) > 5 else ""
            elif text.startswith("Rss:") and mapping == "anon_inode:bpf-map":
                out["bpf_maps"] += int(text.split()[1]) / 1024
            elif text.startswith("Pss:"):
                out["pss"] += int(text.split()[1]) / 1024
    return out


def bpf_prog_runs(name="pydi_hook"):
    """{prog id: (run_time_ns, run_cnt)} of the loaded BPF programs called
    name; the counts need kernel.bpf_stats_enabled=1."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                         text=True).stdout
    try:
        progs = json.loads(out or "[]")
    except ValueError:
        return {}
    return {p["id"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in progs if p.get("name") == name}


class BpfStats:
    """kernel.bpf_stats_enabled on for a while, restored after."""

    PATH = "/proc/sys/kernel/bpf_stats_enabled"

    def __enter__(self):
        with open(self.PATH) as fd:
            self.was = fd.read().strip()
        with open(self.PATH, "w") as fd:
            fd.write("1")
        return self

    def __exit__(self, *exc):
        with open(self.PATH, "w") as fd:
            fd.write(self.was)
