"""What the agent fault and security tests share: the real `pydi agent`
run with a settings file (stderr, JSON lines and control socket in a private
directory), a small target service it discovers by OTEL_SERVICE_NAME, a
hostile HTTP server standing in for the DI API and the OTLP collector, and
readers for RSS and the helper's state in a target."""
import http.server
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import HOST_PYTHON, PYDI, parse_cli_line

HELPER = os.environ.get("PYDI_HELPER") or os.path.join(
    os.path.dirname(PYDI), "userspace-rebind", "_pydi_helper.abi3.so")
HELPER_MAPPING = "memfd:pydi-helper"
# ADOT's settings variables: never inherited from the caller's environment.
ADOT_ENV = ("OTEL_AWS_DYNAMIC_INSTRUMENTATION_API_URL",
            "OTEL_AWS_OTLP_LOGS_ENDPOINT",
            "OTEL_AWS_DYNAMIC_INSTRUMENTATION_BREAKPOINT_POLL_INTERVAL",
            "OTEL_AWS_DYNAMIC_INSTRUMENTATION_PROBE_POLL_INTERVAL",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "PYDI_CONTROL_SOCKET",
            "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES")
BASE_SETTINGS = {
    "rescan_interval_s": 2,
    "status_sweep_interval_s": 5,
    "lease_ms": 3000,
}


def wait_until(what, predicate, timeout, context=None, interval=0.05):
    """predicate()'s first truthy value within timeout s, else an
    AssertionError naming what and what context() says. A context with an
    `agent` attribute also ends the wait early once that agent has
    exited."""
    deadline = time.monotonic() + timeout
    agent = getattr(context, "agent", None)
    while True:
        value = predicate()
        if value:
            return value
        if agent is not None and not agent.alive():
            raise AssertionError(f"{what}: the agent exited "
                                 f"{agent.proc.returncode}\n{context()}")
        if time.monotonic() > deadline:
            extra = context() if context else ""
            raise AssertionError(f"{what}: not within {timeout} s\n{extra}")
        time.sleep(interval)


def free_port():
    """A loopback TCP port free just now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid):
    """VmRSS of pid in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def start_time(pid):
    """Field 22 of /proc/PID/stat: the process's start, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


class RssSampler:
    """A thread sampling a process's RSS every 50 ms: peak and samples."""

    def __init__(self, pid):
        self.pid = pid
        self.samples = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            kb = rss_kb(self.pid)
            if kb:
                self.samples.append((time.monotonic(), kb))
            time.sleep(0.05)

    def peak(self, since=None):
        values = [kb for t, kb in self.samples if since is None or t >= since]
        return max(values) if values else 0

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        return self.peak()


# -- the agent --

class Agent:
    """`pydi agent --config FILE` in the foreground, in a directory of its
    own (settings, stderr, JSON lines, control socket, config dir).
    Subclasses may change the settings every agent starts from, ASan's
    quarantine (None: ASan's default) and how JSON lines are decoded."""

    BASE_SETTINGS = BASE_SETTINGS
    ASAN_QUARANTINE_MB = 8
    DECODE_ERRORS = "replace"

    def __init__(self, workdir, env=None, binary=PYDI, argv_prefix=(),
                 config_dir=None, **settings):
        self.dir = tempfile.mkdtemp(prefix="agent-", dir=workdir)
        os.chmod(self.dir, 0o755)
        self.config_path = os.path.join(self.dir, "agent.json")
        self.stderr_path = os.path.join(self.dir, "agent.stderr")
        self.socket = os.path.join(self.dir, "agent.sock")
        self.config_dir = config_dir or os.path.join(self.dir, "probes")
        os.makedirs(self.config_dir, exist_ok=True)
        self.settings = dict(self.BASE_SETTINGS,
                             jsonl=os.path.join(self.dir, "agent.jsonl"),
                             control_socket=self.socket,
                             config_dir=self.config_dir)
        self.settings.update(settings)
        self.settings = {k: v for k, v in self.settings.items()
                         if v is not None}
        self.jsonl_path = self.settings.get("jsonl")
        self.socket = self.settings["control_socket"]
        with open(self.config_path, "w") as f:
            json.dump(self.settings, f, indent=1)
        self.env = {k: v for k, v in os.environ.items() if k not in ADOT_ENV}
        # ASan's quarantine keeps up to 256 MiB of freed memory resident:
        # keep it small so RSS says what the agent holds.
        if self.ASAN_QUARANTINE_MB is not None:
            asan = self.env.get("ASAN_OPTIONS", "")
            quarantine = f"quarantine_size_mb={self.ASAN_QUARANTINE_MB}"
            self.env["ASAN_OPTIONS"] = ":".join(
                x for x in (asan, quarantine) if x)
        self.env.update(env or {})
        self._lines = []
        self._offset = 0
        self._stderr = open(self.stderr_path, "w")
        self.started = time.time()
        self.proc = subprocess.Popen(
            [*argv_prefix, binary, "agent", "--config", self.config_path],
            stdin=subprocess.DEVNULL, stdout=self._stderr,
            stderr=self._stderr, env=self.env)
        self.pid = self.proc.pid
        self.rc = None

    def alive(self):
        return self.proc.poll() is None

    def wait_ready(self, timeout=60):
        """Until the control socket answers."""
        wait_until("the agent's control socket answers", lambda: (
            self._check_alive() and os.path.exists(self.socket) and
            self.cli("-j", "probe", "list").returncode == 0), timeout,
            self.tail, interval=0.1)
        return self

    def _check_alive(self):
        if not self.alive():
            raise AssertionError(f"the agent exited {self.proc.returncode}\n"
                                 f"{self.tail()}")
        return True

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Send sig, wait for the exit code (SIGKILL after timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.rc = f"hung after {sig.name} for {timeout} s"
                return self.rc
        self.rc = self.proc.returncode if self.rc is None else self.rc
        return self.rc

    def stderr(self):
        self._stderr.flush()
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def tail(self, n=4000):
        text = self.stderr()
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        return f"--- agent ({state}) stderr, last {n} chars ---\n{text[-n:]}"

    def close(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.stop()
        self._stderr.close()

    def rss_kb(self):
        return rss_kb(self.pid)

    # -- JSON lines --

    def lines(self):
        """Every complete JSON line so far, each validated against the CLI
        schema (and through it the snapshot schema)."""
        try:
            with open(self.jsonl_path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except (FileNotFoundError, TypeError):
            return list(self._lines)
        end = data.rfind(b"\n") + 1
        for raw in data[:end].decode(errors=self.DECODE_ERRORS).splitlines():
            if raw.strip():
                obj = parse_cli_line(raw)
                obj["_t"] = time.time()
                self._lines.append(obj)
        self._offset += end
        return list(self._lines)

    def statuses(self, probe=None, pid=None, status=None, since=None):
        """Status lines (read at or after since: a status line carries no
        time the contract names)."""
        return [o for o in self.lines() if o.get("type") == "status"
                and (probe is None or o.get("probe") == probe)
                and (pid is None or o.get("pid") == pid)
                and (status is None or o.get("status") == status)
                and (since is None or o["_t"] >= since)]

    def snapshots(self, probe=None, pid=None, since=None, taken_since=None,
                  by_hash=False):
        """Snapshots of probe (by its id, or with by_hash also by its
        location hash), read at or after since, taken (by their own
        timestamp) at or after taken_since."""
        return [o for o in self.lines() if o.get("type") == "snapshot"
                and (probe is None or o.get("probe") == probe
                     or (by_hash and o.get("location_hash") == probe))
                and (pid is None or o.get("pid") == pid)
                and (since is None or o["_t"] >= since)
                and (taken_since is None
                     or o["timestamp"] >= taken_since * 1000)]

    def mark(self):
        """Now, after reading every line written so far: statuses(since=
        mark()) are those read later."""
        self.lines()
        return time.time()

    # -- the control socket --

    def cli(self, *args, timeout=30, prefix=(), binary=PYDI, env=None,
            socket=True):
        """pydi with args, as the agent's environment (plus env) runs it;
        a `probe` command is sent to this agent's socket unless not
        socket."""
        argv = [*prefix, binary, *args]
        if socket and "probe" in argv:
            at = argv.index("probe") + 1
            argv[at:at] = ["--socket", self.socket]
        run_env = dict(self.env)
        run_env.update(env or {})
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, env=run_env)

    def add(self, *args):
        proc = self.cli("probe", "add", *args)
        assert proc.returncode == 0, (
            f"probe add {args}: rc {proc.returncode}: {proc.stderr}"
            f"{proc.stdout}\n{self.tail()}")

    def add_config(self, config):
        path = os.path.join(self.dir, f"add-{time.monotonic_ns()}.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.add("--file", path)

    def delete(self, probe_id):
        proc = self.cli("probe", "del", probe_id)
        assert proc.returncode == 0, (proc.stderr, proc.stdout, self.tail())

    def probe_answer(self):
        """`pydi -j probe list`'s whole answer."""
        proc = self.cli("-j", "probe", "list")
        assert proc.returncode == 0, (
            f"pydi -j probe list: rc {proc.returncode}: {proc.stderr}"
            f"{proc.stdout}\n{self.tail()}")
        return json.loads(proc.stdout)

    def probe_list(self):
        return self.probe_answer()["probes"]

    def probe(self, probe_id):
        for p in self.probe_list():
            if p.get("id") == probe_id:
                return p
        return None

    def process(self, probe_id, pid):
        for proc in (self.probe(probe_id) or {}).get("processes", []):
            if proc.get("pid") == pid:
                return proc
        return None

    def status_of(self, probe_id, pid):
        proc = self.process(probe_id, pid)
        return proc and proc.get("status")

    def metrics(self):
        """{'name{labels}': value} from metrics_listen."""
        import urllib.request
        host_port = self.settings["metrics_listen"]
        with urllib.request.urlopen(f"http://{host_port}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def probe_config(probe_id, target, service=None, pid=None, itype="PROBE",
                 args=True, rate=None, locals_=False, line=0,
                 max_hits=None, limits=None):
    """An ADOT BreakpointConfiguration with pydi's local keys."""
    module, qualname = target.split(":")
    location = {"Language": "Python", "CodeUnit": module,
                "MethodName": qualname}
    if line:
        location["LineNumber"] = line
    capture = {"CaptureReturn": not line, "CaptureStackTrace": True,
               "CaptureLimits": dict(limits or {})}
    if args:
        capture["CaptureArguments"] = []
    if locals_:
        capture["CaptureLocals"] = []
    if max_hits:
        capture["CaptureLimits"]["MaxHits"] = max_hits
    config = {"InstrumentationType": itype, "SignalType": "SNAPSHOT",
              "LocationHash": probe_id,
              "Location": {"CodeLocation": location},
              "CaptureConfiguration": {"CodeCapture": capture}}
    if service:
        config["Service"] = service
    if pid:
        config["Pid"] = pid
    if rate is not None:
        config["Rate"] = rate
    return config


# -- the target --

APP_SOURCE = r'''
"""A service the agent discovers (OTEL_SERVICE_NAME). Calls work() in a
loop; commands on stdin, one per line, answers one JSON line:
  state            {pid, calls, code_len, original, ...}
  fork             fork a worker (like gunicorn) that runs the same loop
                   and exits with its parent; answers {child}
  exec             exec this script again in place (prints its handshake)
  tight / paced    call work() as fast as possible / every 10 ms
  rate S           calls per second over S seconds
"""
import json
import os
import select
import sys
import time


def work(n, password, api_key, token, note):
    total = n + len(note)
    return total


class Card:
    def __init__(self, number):
        self.number = number


def pay(card, amount, password, opts):
    return amount


def big(a, b, c, d, e, f, g, h):
    return len(a) + len(h)



ORIGINAL = work.__code__
PARENT = os.getpid()
calls = 0
paced = os.environ.get("APP_TIGHT") != "1"
secret = os.environ.get("APP_SECRET", "hunter2-not-a-secret")
blob = "x" * int(os.environ.get("APP_BIG", "0"))
pieces = ["%d-" % i + blob[:300] for i in range(8)]


def state():
    code = work.__code__
    return {"pid": os.getpid(), "calls": calls, "code_len": len(code.co_code),
            "original": code is ORIGINAL, "t": time.monotonic()}


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def one_call():
    global calls
    calls += 1
    work(calls, secret, secret, secret, "note-%s-%d" % (secret, calls))
    pay(Card("4111-" + secret), calls, secret,
        {"password": secret, "user": "bob"})
    if blob:
        # a: the whole (maybe 10 MB) string; b..h: fresh lists of 300-char
        # strings, enough to outgrow a small snapshot cap.
        big(blob, list(pieces), list(pieces), list(pieces), list(pieces),
            list(pieces), list(pieces), list(pieces))


def command(line):
    global paced
    words = line.split()
    if not words:
        return
    if words[0] == "state":
        answer(state())
    elif words[0] == "fork":
        child = os.fork()
        if child == 0:
            worker()
        answer({"child": child})
    elif words[0] == "exec":
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable] + sys.argv)
    elif words[0] == "tight":
        paced = False
        answer({"ok": True})
    elif words[0] == "paced":
        paced = True
        answer({"ok": True})
    elif words[0] == "rate":
        seconds = float(words[1])
        c0, t0 = calls, time.monotonic()
        while time.monotonic() - t0 < seconds:
            for _ in range(200):
                one_call()
        answer({"rate": (calls - c0) / (time.monotonic() - t0)})


def worker():
    """A forked worker: the same loop, no stdin; gone with its parent."""
    global calls
    calls = 0
    os.close(0)
    while os.getppid() == PARENT:
        one_call()
        time.sleep(0.01)
    os._exit(0)


def hostile_environ(mib):
    """Point /proc/PID/environ at a mib MiB buffer of our own, as any
    process may (prctl PR_SET_MM_MAP, no capability needed without a new
    exe_fd): the service's name first, then one endless variable."""
    import ctypes
    import struct
    head = ("OTEL_SERVICE_NAME=%s\0" % os.environ["OTEL_SERVICE_NAME"]).encode()
    size = mib << 20
    buf = ctypes.create_string_buffer(size)
    ctypes.memmove(buf, head, len(head))
    ctypes.memset(ctypes.addressof(buf) + len(head), ord("y"),
                  size - len(head) - 1)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sbrk.restype = ctypes.c_void_p
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    field = lambda n: int(fields[n - 3])    # proc(5) numbering
    start = ctypes.addressof(buf)
    # struct prctl_mm_map: code, data, brk, stack, args kept; env moved;
    # no auxv change; exe_fd -1.
    mm = struct.pack("12Q2I", field(26), field(27), field(45), field(46),
                     field(47), libc.sbrk(0), field(28), field(48),
                     field(49), start, start + size, 0, 0, 0xffffffff)
    mm_buf = ctypes.create_string_buffer(mm, len(mm))
    # PR_SET_MM (35), PR_SET_MM_MAP (14)
    if libc.prctl(35, 14, mm_buf, len(mm), 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MM_MAP)")
    return buf


if os.environ.get("APP_ENVIRON_MIB"):
    environ_buffer = hostile_environ(int(os.environ["APP_ENVIRON_MIB"]))
answer({"pid": os.getpid(), "handshake": True})
while True:
    timeout = 0.01 if paced else 0
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if ready:
        line = sys.stdin.readline()
        if not line:
            break
        command(line)
    if paced:
        one_call()
    else:
        for _ in range(500):
            one_call()
'''


class App:
    """APP_SOURCE as a service named `service`, run by the host's 3.11."""

    def __init__(self, workdir, service, env=None, name="fault_app",
                 argv_prefix=(), preexec_fn=None):
        self.path = os.path.join(workdir, f"{name}.py")
        self.module = name
        if not os.path.exists(self.path):
            with open(self.path, "w") as f:
                f.write(APP_SOURCE)
        self.service = service
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "PYTHONDONTWRITEBYTECODE": "1"}
        if service:
            self.env["OTEL_SERVICE_NAME"] = service
        self.env.update(env or {})
        self.proc = subprocess.Popen(
            [*argv_prefix, HOST_PYTHON, self.path], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=self.env,
            preexec_fn=preexec_fn)
        hello = self.read()
        if not hello or not hello.get("handshake"):
            self.proc.kill()
            raise RuntimeError(f"target exited before its handshake: {hello}")
        self.pid = hello["pid"]
        self.children = []

    def read(self, timeout=30):
        ready, _, _ = select_([self.proc.stdout], timeout)
        if not ready:
            raise AssertionError(f"pid {self.proc.pid}: no answer in {timeout} s")
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def ask(self, cmd, timeout=30):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.read(timeout)

    def state(self):
        return self.ask("state")

    def fork(self):
        child = self.ask("fork")["child"]
        self.children.append(child)
        return child

    def exec_(self):
        self.proc.stdin.write("exec\n")
        self.proc.stdin.flush()
        hello = self.read()
        assert hello and hello.get("handshake"), hello
        assert hello["pid"] == self.pid, hello
        return hello

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
                self.proc.kill()
                self.proc.wait()
        for child in self.children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def select_(files, timeout):
    import select
    return select.select(files, [], [], timeout)


# -- one test's agents and apps --

class World:
    """Agents and apps of one test, stopped at its end; each agent's exit
    code is checked (0 after SIGTERM: with ASan that includes no leaks)."""

    def __init__(self, workdir):
        self.dir = workdir
        self.agents = []
        self.apps = []

    def agent(self, ready=True, **kw):
        a = Agent(self.dir, **kw)
        self.agents.append(a)
        return a.wait_ready() if ready else a

    def app(self, service, **kw):
        a = App(self.dir, service, **kw)
        self.apps.append(a)
        return a

    def close(self):
        rcs = []
        for a in self.agents:
            was_alive = a.alive()
            a.close()
            if was_alive:
                rcs.append((a, a.rc))
        for app in self.apps:
            app.stop()
        return rcs


def world_fixtures(prefix):
    """A test module's fixtures (assign them to `workdir, world`): workdir,
    a fresh directory named prefix..., 0755 and removed after the test; and
    world, a World in it, closed after the test, which fails if an agent
    still alive then did not exit 0."""
    @pytest.fixture
    def workdir():
        d = tempfile.mkdtemp(prefix=prefix)
        os.chmod(d, 0o755)
        yield d
        shutil.rmtree(d, ignore_errors=True)

    @pytest.fixture
    def world(workdir):
        yield from _world_in(workdir)

    return workdir, world


def _world_in(workdir):
    w = World(workdir)
    failed = []
    try:
        yield w
    finally:
        for agent, rc in w.close():
            if rc != 0:
                failed.append(f"agent exited {rc} after SIGTERM "
                              f"(ASan: a leak or error?)\n{agent.tail(6000)}")
    assert not failed, failed[0]


# -- the helper, seen from outside the target --

_HELPER_STATE_OFFSET = []


def helper_state(pid):
    """{status, hooks_active, lease_deadline_ns, lease_expiries} of the
    helper in pid (struct pydi_helper_state, userspace-rebind/helper_abi.h),
    or None when no helper is loaded."""
    if not _HELPER_STATE_OFFSET:
        out = subprocess.run(["nm", "-D", "--defined-only", HELPER],
                             capture_output=True, text=True, check=True).stdout
        m = re.search(r"^([0-9a-f]+) \S+ pydi_helper_state$", out, re.M)
        assert m, f"no pydi_helper_state in {HELPER}"
        _HELPER_STATE_OFFSET.append(int(m.group(1), 16))
    base = None
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and HELPER_MAPPING in line and \
                        int(parts[2], 16) == 0:
                    base = int(parts[0].split("-")[0], 16)
                    break
    except FileNotFoundError:
        return None
    if base is None:
        return None
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(base + _HELPER_STATE_OFFSET[0])
        raw = mem.read(88)
    assert raw[:8] == b"pydihelp", f"pid {pid}: helper state magic {raw[:8]!r}"
    field = lambda off, size=8: int.from_bytes(raw[off:off + size], "little")
    return {"status": field(12, 4), "hooks_active": field(28, 4),
            "lease_deadline_ns": field(64), "lease_expiries": field(72),
            "commands_run": field(80)}


def helper_loaded(pid):
    try:
        with open(f"/proc/{pid}/maps") as f:
            return HELPER_MAPPING in f.read()
    except FileNotFoundError:
        return False


# -- a hostile HTTP server (DI API and OTLP collector at once) --

MODES = ("ok", "slow", "reset", "500", "invalid_json", "huge", "chunked")


class Hostile:
    """Answers every POST as `mode` says:
      ok            200, a valid empty answer (DI API: no configurations)
      slow          10 s of silence, then the ok answer
      reset         a TCP reset (SO_LINGER 0) before any answer
      500           500 with a JSON error
      invalid_json  200 with a body that is not JSON
      huge          200 with a valid JSON body of 100 MB (Content-Length)
      chunked       200, chunked, chunks forever (until the client leaves)
    Records (time, path, mode, bytes sent, seconds) per request."""

    HUGE = 100 << 20

    def __init__(self):
        self.mode = "ok"
        self.lock = threading.Lock()
        self.requests = []
        self.stopping = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                owner._serve(self)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass    # clients leaving mid-answer is what we test

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_url(self):
        return f"http://127.0.0.1:{self.port}/v1/logs"

    def set_mode(self, mode):
        assert mode in MODES, mode
        with self.lock:
            self.mode = mode

    def calls(self, since=0.0, path=None, mode=None, service=None):
        with self.lock:
            return [dict(r) for r in self.requests if r["t"] >= since
                    and (path is None or r["path"].startswith(path))
                    and (mode is None or r["mode"] == mode)
                    and (service is None or r["service"] == service)]

    def _ok_body(self, path):
        if path.startswith("/v1/logs"):
            return b"{}"
        if "list" in path:
            return json.dumps({"Changed": False, "LatestConfigurations": [],
                               "SyncedAt": None}).encode()
        return b"{}"

    def _send(self, h, code, body, ctype="application/json"):
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        return len(body)

    def _serve(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        service = None
        if not h.path.startswith("/v1/logs"):
            try:
                service = json.loads(body).get("Service")
            except ValueError:
                pass
        with self.lock:
            mode = self.mode
        rec = {"t": time.time(), "path": h.path, "mode": mode, "sent": 0,
               "seconds": None, "service": service, "client_left": False}
        with self.lock:
            self.requests.append(rec)
        t0 = time.monotonic()
        write = h.wfile.write

        def counted(data):
            n = write(data)
            rec["sent"] += len(data)
            return n
        h.wfile.write = counted
        try:
            self._answer(h, mode)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            rec["client_left"] = True
        rec["seconds"] = time.monotonic() - t0

    def _answer(self, h, mode):
        path = h.path
        if mode == "ok":
            return self._send(h, 200, self._ok_body(path))
        if mode == "slow":
            # Silent for 10 s; a client that gives up first is seen leaving.
            import select
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not self.stopping.is_set():
                r, _, _ = select.select([h.connection], [], [], 0.05)
                if r and not h.connection.recv(1, socket.MSG_PEEK):
                    raise ConnectionResetError("client left while waiting")
            return self._send(h, 200, self._ok_body(path))
        if mode == "reset":
            import struct
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return 0
        if mode == "500":
            return self._send(h, 500, b'{"Message": "hostile: internal"}')
        if mode == "invalid_json":
            return self._send(h, 200, b'{"Changed": true, "LatestConfigurat')
        if mode == "huge":
            head = b'{"Changed": true, "LatestConfigurations": [], "Pad": "'
            tail = b'"}'
            pad = self.HUGE - len(head) - len(tail)
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(self.HUGE))
            h.end_headers()
            h.wfile.write(head)
            sent = len(head)
            chunk = b"x" * (1 << 20)
            while pad > 0 and not self.stopping.is_set():
                n = min(pad, len(chunk))
                h.wfile.write(chunk[:n])
                pad -= n
                sent += n
            h.wfile.write(tail)
            return sent + len(tail)
        if mode == "chunked":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            h.wfile.write(b"1\r\n[\r\n")
            sent = 1
            chunk = b'{"LocationHash": "x"},' * 1000
            frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
            deadline = time.monotonic() + 120
            while not self.stopping.is_set() and time.monotonic() < deadline:
                h.wfile.write(frame)
                sent += len(chunk)
                time.sleep(0.001)
            return sent
        raise AssertionError(mode)

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
