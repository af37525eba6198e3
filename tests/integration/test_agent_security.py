"""`pydi agent` against hostile input and callers (issue 8, "Security"):
the real agent, real targets (the host's 3.11; a container-style 3.14 in
the namespaced root for the symlink case).

  1. Without its capabilities it refuses to start, naming every missing one
     at once, before touching anything (test_deploy drops them one by one).
  2. The control socket: 0600 whatever the umask, a planted symlink at its
     path is replaced, not followed; a non-root peer is refused and logged
     even where the mode would let it in; garbage, oversize and silent root
     clients get errors or time out while the probes keep working.
  3. Discovery never opens a path the container controls: a containerized
     service whose interpreter path now leads to a host file is found,
     instrumented and probed, and the host file is never opened.
  4. A target's environment of 10 MiB (a 128 KiB OTEL_RESOURCE_ATTRIBUTES
     among it): the agent reads a bounded prefix, stays small, instruments
     it and keeps instrumenting others; 10 MB string arguments are read
     only up to the capture limit.
  5. The snapshot size cap (max_snapshot_bytes) cuts big snapshots and
     marks them truncated, in the JSON lines and the OTLP body.
  6. Redaction by name (built-in list and configured names, also dict
     keys) and by configured type, before anything leaves the agent: the
     secret never appears in the JSON lines, the OTLP requests or the
     agent's stderr (log_level debug).
"""
import gzip
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest

from conftest import HOST_PYTHON, PYDI, SOURCE, child_pid, report, rootfs_path
from agent_harness import (APP_SOURCE, Agent, RssSampler, helper_loaded,
                           helper_state, probe_config, rss_kb, wait_until,
                           world_fixtures)

sys.path.insert(0, os.path.join(SOURCE, "contract-tests"))
from mock_collector import flatten  # noqa: E402 -- the contract suite's decoder

M = "fault_app"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
          "--inh-caps=-all", "--bounding-set=-all"]


def note(line):
    report("agent security: " + line)


def service_name(what):
    return f"pydi-sec-{what}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


workdir, world = world_fixtures("pydi-agent-sec-")


# == 1 ==

def test_refuses_without_capabilities_naming_every_one(world, workdir):
    listing = json.loads(subprocess.run(
        [PYDI, "-j", "agent", "--list-caps"], capture_output=True, text=True,
        check=True, timeout=20).stdout)
    names = [c["name"] for c in listing["capabilities"]]
    assert names, listing
    service = service_name("nocaps")
    app = world.app(service)
    drop = ",".join("-" + n[len("CAP_"):].lower() for n in names)
    agent = Agent(workdir, argv_prefix=["setpriv", f"--inh-caps={drop}",
                                        f"--bounding-set={drop}", "--"])
    world.agents.append(agent)
    try:
        rc = agent.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("without its capabilities the agent started")
    err = agent.stderr()
    assert rc != 0, err
    assert len(err.strip().splitlines()) == 1, f"not one line: {err}"
    for name in names:
        assert name in err, f"{name} not named: {err}"
    assert not os.path.exists(agent.socket), "a refused agent made its socket"
    time.sleep(0.5)
    assert not helper_loaded(app.pid), "a refused agent touched a target"
    note(f"without {len(names)} capabilities: exit {rc}, one line naming "
         f"all of them")


# == 2 ==

def raw_request(path, payload, timeout=10, shutdown=True):
    """Send bytes to the control socket, return what comes back."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        s.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    if shutdown:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    chunks = []
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return b"".join(chunks)


def test_control_socket_mode_peer_credentials_and_bad_clients(world, workdir):
    service = service_name("sock")
    # A symlink planted where the socket goes, to a file it must not touch.
    victim = os.path.join(workdir, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    sock_dir = os.path.join(workdir, "run")
    os.mkdir(sock_dir)
    sock = os.path.join(sock_dir, "agent.sock")
    os.symlink(victim, sock)
    old_umask = os.umask(0)
    try:
        agent = world.agent(control_socket=sock)
    finally:
        os.umask(old_umask)
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == 0
    with open(victim) as f:
        assert f.read() == "precious\n", "the planted symlink was followed"

    app = world.app(service)
    agent.add("--id", "s-work", "--service", service, "--type", "PROBE",
              f"{M}:work")
    wait_until("snapshots", lambda: agent.snapshots("s-work", app.pid), 20,
               agent.tail)

    # A non-root peer, with the mode opened to everyone: refused, logged.
    os.chmod(sock, 0o666)
    # The agent may answer and close before the request is even sent.
    nobody_script = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "try: s.sendall(b'{\"cmd\":\"add\",\"config\":{}}\\n')\n"
        "except OSError: pass\n"
        "print(s.recv(4096).decode())\n")
    log0 = len(agent.stderr())
    proc = subprocess.run([*NOBODY, HOST_PYTHON, "-c", nobody_script, sock],
                          capture_output=True, text=True, timeout=20)
    os.chmod(sock, 0o600)
    reply = json.loads(proc.stdout or "{}")
    assert reply.get("ok") is False and "root" in reply.get("error", ""), (
        proc.stdout, proc.stderr)
    wait_until("the refusal logged with the peer's uid", lambda:
               "refused uid 65534" in agent.stderr()[log0:], 5, agent.tail)
    # With the real mode, uid 65534 cannot even connect.
    proc = subprocess.run([*NOBODY, HOST_PYTHON, "-c", nobody_script, sock],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0 and "Permission denied" in proc.stderr, proc

    # Root clients sending garbage: an error each, the agent unmoved.
    bad = {
        "not JSON": b"{\"cmd\": \"list\"\n",
        "not an object": b"[1, 2, 3]\n",
        "no cmd": b"{}\n",
        "unknown cmd": b"{\"cmd\": \"rm -rf\"}\n",
        "add without config": b"{\"cmd\": \"add\"}\n",
        "add, config not an object": b"{\"cmd\": \"add\", \"config\": 7}\n",
        "del without id": b"{\"cmd\": \"del\"}\n",
        "binary": bytes(range(256)) + b"\n",
    }
    for what, payload in bad.items():
        out = raw_request(sock, payload)
        reply = json.loads(out)
        assert reply.get("ok") is False and reply.get("error"), (what, out)
    # Larger than the 1 MiB request limit: refused, connection closed.
    out = raw_request(sock, b"{\"cmd\":\"list\",\"pad\":\"" + b"x" * (2 << 20))
    assert b"probes" not in out, out[:200]
    # A root client that connects and says nothing: the agent gives up on
    # it (its 5 s I/O timeout) and the probes keep working meanwhile.
    t0 = time.time()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    time.sleep(0.2)
    listed = agent.cli("-j", "probe", "list")
    waited = time.time() - t0
    s.close()
    assert listed.returncode == 0, listed.stderr
    assert waited < 3, f"a silent client held the agent {waited:.1f} s"
    t1 = time.time()
    wait_until("snapshots keep flowing after the bad clients", lambda:
               agent.snapshots("s-work", app.pid, since=t1), 10, agent.tail)
    assert agent.alive(), agent.tail()
    assert agent.process("s-work", app.pid)["status"] == "ACTIVE"
    note(f"control socket: 0600 under umask 0, planted symlink replaced, "
         f"uid 65534 refused and logged, {len(bad)} malformed and a 2 MiB "
         f"request refused, a silent client held it {waited:.1f} s")


# == 3 ==

class Inotify:
    """Every inotify event on one file (IN_ALL_EVENTS), read on demand."""

    IN_ALL_EVENTS = 0xfff

    def __init__(self, path):
        import ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        wd = self.libc.inotify_add_watch(self.fd, path.encode(),
                                         self.IN_ALL_EVENTS)
        assert wd >= 0, ctypes.get_errno()

    def events(self):
        out = []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return out
        pos = 0
        while pos + 16 <= len(data):
            _, mask, _, length = struct.unpack_from("iIII", data, pos)
            out.append(mask)
            pos += 16 + length
        return out

    def close(self):
        os.close(self.fd)


def test_discovery_never_follows_a_container_symlink(world, workdir):
    """A 3.14 service in its own mount and pid namespace, run from a copy
    of the interpreter at ROOT/tmp/pydi-sec-sym/python3.14; then that path
    becomes a symlink to a host file (what a hostile container can do).
    The agent discovers the service, injects, hooks and captures through
    /proc/PID/map_files and process memory: the host file is never opened
    (no inotify event), and its content and times are unchanged."""
    root = rootfs_path()
    python = "/usr/bin/python3.14"
    if not os.access(root + python, os.X_OK):
        pytest.skip(f"{python} missing in {root} (scripts/rootfs)")
    inside = f"/tmp/pydi-sec-sym-{os.getpid()}"
    sym_dir = root + inside
    shutil.rmtree(sym_dir, ignore_errors=True)
    os.makedirs(sym_dir)
    copied = os.path.join(sym_dir, "python3.14")
    shutil.copy2(root + python, copied)
    with open(os.path.join(sym_dir, f"{M}.py"), "w") as f:
        f.write(APP_SOURCE)
    victim_dir = tempfile.mkdtemp(prefix="pydi-sec-victim-", dir=workdir)
    victim = os.path.join(victim_dir, "host-file")
    shutil.copy2("/usr/bin/true", victim)
    with open(victim, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    # atime after mtime: a read would not move it (relatime) -- so set
    # atime before mtime, and any read moves it.
    os.utime(victim, ns=(1_000_000_000, 2_000_000_000))
    service = service_name("sym")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OTEL_SERVICE_NAME": service,
           "PYTHONDONTWRITEBYTECODE": "1"}
    argv = ["unshare", "-mpf", f"--mount-proc={root}/proc", "chroot", root,
            f"{inside}/python3.14", f"{inside}/{M}.py"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    watch = None
    try:
        hello = json.loads(proc.stdout.readline())
        assert hello.get("handshake"), hello
        pid = child_pid(proc.pid)
        with open(f"/proc/{pid}/maps") as f:
            assert "python3.14" in f.read()
        link_tmp = os.path.join(sym_dir, ".link")
        os.symlink(victim, link_tmp)
        os.rename(link_tmp, copied)
        naive = f"/proc/{pid}/root{inside}/python3.14"
        assert os.stat(naive).st_ino == os.stat(victim).st_ino, \
            "the trap is not armed"
        before = os.stat(victim)
        watch = Inotify(victim)

        agent = world.agent()
        agent.add("--id", "sym-work", "--service", service, "--type",
                  "PROBE", f"{M}:work")
        wait_until("READY in the containerized service", lambda: agent.
                   statuses("sym-work", pid, "READY"), 30, agent.tail)
        snaps = wait_until("snapshots from it", lambda: agent.snapshots(
            "sym-work", pid), 15, agent.tail)
        assert snaps[0]["stack"][0]["function"] == "work", snaps[0]["stack"]
        agent.delete("sym-work")
        events = watch.events()
        assert events == [], f"the host file saw inotify events {events}"
        after = os.stat(victim)
        assert (after.st_ino, after.st_size, after.st_mtime_ns,
                after.st_atime_ns, after.st_mode) == (
            before.st_ino, before.st_size, before.st_mtime_ns,
            before.st_atime_ns, before.st_mode)
        with open(victim, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest
        assert os.path.islink(copied)
        note("container symlink: the agent found, hooked and captured a "
             "3.14 service whose interpreter path leads to a host file; the "
             "host file saw no inotify event")
    finally:
        if watch:
            watch.close()
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(sym_dir, ignore_errors=True)


# == 4 ==

def big_stack():
    """exec takes arguments and environment up to a quarter of the stack
    limit, at most 6 MiB: raise the limit so that 6 MiB fits."""
    import resource
    resource.setrlimit(resource.RLIMIT_STACK, (32 << 20, 32 << 20))


def test_huge_environment_and_strings_stay_bounded(world):
    """Three services: one with the largest environment exec allows (~5.5
    MiB: OTEL_SERVICE_NAME, a 128 KiB OTEL_RESOURCE_ATTRIBUTES — the
    kernel's per-variable maximum — and 42 more 128 KiB variables) and a
    10 MB string argument; one whose /proc/PID/environ it points at a
    64 MiB buffer of its own (prctl PR_SET_MM, as a root container can);
    one ordinary. The agent reads a bounded prefix of each environment,
    instruments all three, captures strings only up to the limit, and its
    RSS stays near where it was."""
    chunk = 128 * 1024 - 64
    attrs = "deployment.environment.name=big," + ",".join(
        f"k{i}=" + "v" * 40 for i in range(3000))
    names = {k: service_name(k) for k in ("big", "hostile", "plain")}
    big_env = {"OTEL_RESOURCE_ATTRIBUTES": attrs[:chunk],
               "APP_BIG": str(10_000_000)}
    for i in range(42):
        big_env[f"PAD_{i:03d}"] = chr(ord("a") + i % 26) * chunk
    agent = world.agent()
    rss0 = agent.rss_kb()
    sampler = RssSampler(agent.pid)
    try:
        apps = {"big": world.app(names["big"], env=big_env,
                                 preexec_fn=big_stack),
                "hostile": world.app(names["hostile"],
                                     env={"APP_ENVIRON_MIB": "64"}),
                "plain": world.app(names["plain"])}
        sizes = {}
        for k, app in apps.items():
            with open(f"/proc/{app.pid}/environ", "rb") as f:
                sizes[k] = len(f.read())
        assert sizes["big"] > 5 << 20 and sizes["hostile"] >= 64 << 20, sizes
        for k, app in apps.items():
            fn = "big" if k == "big" else "work"
            agent.add("--id", f"env-{k}", "--service", names[k], "--type",
                      "PROBE", f"{M}:{fn}")
        snaps = {}
        for k, app in apps.items():
            snaps[k] = wait_until(f"the {k}-environment service probed",
                                  lambda k=k, app=app: agent.snapshots(
                                      f"env-{k}", app.pid), 20, agent.tail)
        args = snaps["big"][0]["captures"]["entry"]["arguments"]
        a = args["a"]
        assert a["type"] == "str" and a.get("truncated") is True, a
        assert a.get("size") == 10_000_000 and len(a["value"]) <= 255, (
            a.get("size"), len(a.get("value", "")))
        time.sleep(1)
    finally:
        peak = sampler.stop()
    grow = (peak - rss0) / 1024
    assert agent.alive(), agent.tail()
    assert grow < 32, f"agent RSS grew {grow:.0f} MiB over {rss0 >> 10} MiB"
    note(f"environments of {sizes['big'] / 2**20:.1f} MiB (exec) and "
         f"{sizes['hostile'] >> 20} MiB (PR_SET_MM_MAP): both instrumented, agent "
         f"RSS +{grow:.1f} MiB; a 10 MB string argument captured as "
         f"{len(a['value'])} chars with size {a['size']}")


# == 5 ==

class RawCollector:
    """An OTLP/HTTP logs receiver keeping each request's body as sent
    (after gzip), and its records decoded by the contract suite's decoder."""

    def __init__(self):
        self.lock = threading.Lock()
        self.bodies = []
        self.records = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                with owner.lock:
                    owner.bodies.append(raw)
                    owner.records.extend(flatten(json.loads(raw)))
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/logs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def by_hash(self, h):
        with self.lock:
            return [r for r in self.records
                    if r["attributes"].get("aws.di.location_hash") == h]

    def raw(self):
        with self.lock:
            return b"".join(self.bodies)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_snapshot_size_cap_marks_truncated(world):
    """max_snapshot_bytes 4096 and a function with eight 1 KiB-captured
    string arguments: its snapshots are cut to the cap, say truncated, and
    say which values were cut; in the JSON lines and the OTLP body."""
    service = service_name("cap")
    cap = 4096
    col = RawCollector()
    try:
        agent = world.agent(max_snapshot_bytes=cap, otlp_endpoint=col.url,
                            otlp_compression="gzip", batch_max=4)
        app = world.app(service, env={"APP_BIG": "5000"})
        agent.add_config(probe_config(
            "cap-big", f"{M}:big", service=service,
            limits={"MaxStringLength": 1024}))
        agent.add_config(probe_config("cap-small", f"{M}:work",
                                      service=service))
        snaps = wait_until("big snapshots", lambda: agent.snapshots(
            "cap-big", app.pid), 20, agent.tail)
        wait_until("small snapshots", lambda: agent.snapshots(
            "cap-small", app.pid), 10, agent.tail)
        records = wait_until("big snapshots at the collector", lambda:
                             col.by_hash("cap-big"), 20, agent.tail)
        small = wait_until("small snapshots at the collector", lambda:
                           col.by_hash("cap-small"), 20, agent.tail)
    finally:
        col.stop()
    with open(agent.jsonl_path, "rb") as f:
        lines = [l for l in f.read().splitlines()
                 if b'"probe":"cap-big"' in l or b'"probe": "cap-big"' in l]
    assert lines
    longest = max(len(l) for l in lines)
    for snap in snaps:
        assert snap.get("truncated") is True, snap
        cut = [n for n, v in snap["captures"]["entry"]["arguments"].items()
               if v.get("not_captured_reason") == "snapshot_size"]
        assert cut, snap["captures"]
    assert longest <= cap + 64, f"a {longest}-byte line over the {cap} cap"
    for r in records:
        assert r["attributes"].get("pydi.truncated") is True, r["attributes"]
    for r in small:
        assert "pydi.truncated" not in r["attributes"], r["attributes"]
    assert not agent.snapshots("cap-small", app.pid)[0].get("truncated")
    note(f"max_snapshot_bytes {cap}: big snapshots cut to <= {longest} bytes "
         f"per line, truncated marked (JSON lines and OTLP attribute)")


# == 6 ==

def test_redaction_before_anything_leaves_the_agent(world):
    """Arguments password/api_key/token (built-in names), note (a configured
    name), card (a configured type, Card) and a dict with a "password" key
    all carry one secret; a line probe sees them as locals. Neither the
    JSON lines, nor the OTLP requests, nor the agent's stderr at log_level
    debug ever contain it, and each redacted value says so."""
    secret = "S3cr3t-" + uuid.uuid4().hex
    service = service_name("redact")
    col = RawCollector()
    try:
        agent = world.agent(otlp_endpoint=col.url, log_level="debug",
                            redact={"names": ["note"], "types": ["Card"]})
        app = world.app(service, env={"APP_SECRET": secret})
        agent.add_config(probe_config("red-work", f"{M}:work",
                                      service=service))
        agent.add_config(probe_config("red-pay", f"{M}:pay", service=service))
        body = APP_SOURCE.splitlines()
        line = next(i for i, l in enumerate(body, 1)
                    if l.strip() == "return total")
        agent.add_config(probe_config("red-line", f"{M}:work", service=service,
                                      args=False, locals_=True, line=line,
                                      itype="BREAKPOINT", max_hits=1000))
        for h in ("red-work", "red-pay", "red-line"):
            wait_until(f"{h} snapshots", lambda h=h: agent.snapshots(
                h, app.pid), 20, agent.tail)
            wait_until(f"{h} at the collector", lambda h=h: col.by_hash(h),
                       20, agent.tail)
        time.sleep(1.5)
        raw_otlp = col.raw()
        records = col.records
    finally:
        col.stop()
    assert agent.stop() == 0, agent.tail()
    with open(agent.jsonl_path, "rb") as f:
        jsonl = f.read()
    stderr = agent.stderr()
    for where, data in (("JSON lines", jsonl), ("OTLP requests", raw_otlp),
                        ("agent stderr", stderr.encode())):
        assert secret.encode() not in data, f"the secret leaked into {where}"
    work = agent.snapshots("red-work", app.pid)[0]["captures"]["entry"]["arguments"]
    for name in ("password", "api_key", "token", "note"):
        assert work[name].get("not_captured_reason") == "redacted", (name, work)
        assert "value" not in work[name], work[name]
    assert work["n"]["type"] == "int" and "value" in work["n"], work["n"]
    pay = agent.snapshots("red-pay", app.pid)[0]["captures"]["entry"]["arguments"]
    assert pay["card"].get("not_captured_reason") == "redacted", pay["card"]
    assert pay["password"].get("not_captured_reason") == "redacted", pay
    entries = {e["key"].get("value"): e["value"]
               for e in pay["opts"].get("entries", [])}
    assert entries.get("password", {}).get("not_captured_reason") == \
        "redacted", pay["opts"]
    assert entries.get("user", {}).get("value") == "bob", pay["opts"]
    lines = agent.snapshots("red-line", app.pid)[0]["captures"]["lines"]
    local_vars = next(iter(lines.values()))["locals"]
    for name in ("password", "api_key", "token", "note"):
        assert local_vars[name].get("not_captured_reason") == "redacted", \
            (name, local_vars)
    otlp_work = [r for r in records
                 if r["attributes"].get("aws.di.location_hash") == "red-work"]
    args = otlp_work[0]["body"]["captures"]["entry"]["arguments"]
    assert args["password"].get("not_captured_reason") == "redacted", args
    note(f"redaction: {len(records)} OTLP records, "
         f"{len(agent.snapshots())} JSON-line snapshots, stderr "
         f"{len(stderr)} bytes at log_level debug: the secret in none; names "
         f"(built-in, configured, dict keys) and the Card type redacted")


# == 7 ==

def test_service_names_cannot_forge_agent_log_lines(world):
    """A container names its service with a newline (percent-encoded, as
    OTEL_RESOURCE_ATTRIBUTES values may be, and raw in OTEL_SERVICE_NAME),
    a carriage return and a terminal escape, to write lines of its own into
    the agent's log: every line the agent writes stays the agent's."""
    tag = uuid.uuid4().hex[:8]
    forged = f"pydi agent: probe FORGED-{tag} pid 1: READY"
    raw_name = f"svc-{tag}\n{forged}\r\x1b[2K"
    encoded = (f"service.name=svc2-{tag}%0A{forged.replace(' ', '%20')}%0D,"
               f"deployment.environment.name=env%0A{forged.replace(' ', '%20')}")
    agent = world.agent()
    apps = [world.app(None, env={"OTEL_SERVICE_NAME": raw_name}),
            world.app(None, env={"OTEL_RESOURCE_ATTRIBUTES": encoded})]
    agent.add("--id", f"forge-{tag}", "--pid", str(apps[0].pid), "--type",
              "PROBE", f"{M}:work")
    wait_until("the agent looked at both services", lambda: all(
        f"pid {a.pid}:" in agent.stderr() for a in apps), 20, agent.tail)
    wait_until("the pid probe READY", lambda: agent.statuses(
        f"forge-{tag}", apps[0].pid, "READY"), 20, agent.tail)
    log = agent.stderr()
    for line in log.split("\n"):
        assert not line.startswith(forged[:30]), (
            "a target wrote a line into the agent's log", line)
        bad = [c for c in line if ord(c) < 0x20 or ord(c) == 0x7f]
        assert not bad, ("control characters from a target in the log",
                         repr(line))
    status = agent.statuses(f"forge-{tag}", apps[0].pid, "READY")[0]
    assert "\n" not in status["service"], status
    note("service names with newlines, CR and escapes: no forged or "
         "control-character line in the agent's log")
