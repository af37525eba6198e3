"""Shared by the contract apps: the debug state a test reads to prove that
the probed code is original again after pydi is gone, and the stdin watch
that stops an app when the test closes its stdin.

Each app registers, at import, every Python function whose code a test
probes. `state()` reports, per name, id() of the code object recorded then
and id() of the function's `__code__` now (3.11 hooks swap `__code__`), and
on 3.12+ the sys.monitoring tools, global events and local events on those
code objects (pydi uses tool 3 or 4 there).
"""
import sys
import threading

_FUNCTIONS = {}
_ORIGINAL = {}      # name -> the code object at import (kept alive: stable id)


def watch(name, function):
    """Record function (a plain Python function) under name."""
    _FUNCTIONS[name] = function
    _ORIGINAL[name] = function.__code__
    return function


def state():
    out = {"python": "%d.%d" % sys.version_info[:2],
           "codes": {name: {"original": id(_ORIGINAL[name]),
                            "now": id(f.__code__)}
                     for name, f in _FUNCTIONS.items()}}
    mon = getattr(sys, "monitoring", None)
    if mon is not None:
        out["tools"] = {str(t): mon.get_tool(t) for t in range(6)}
        out["events"] = {str(t): mon.get_events(t) for t in range(6)}
        out["local_events"] = {
            name: {str(t): mon.get_local_events(t, f.__code__)
                   for t in range(6)}
            for name, f in _FUNCTIONS.items()}
    return out


def on_stdin_close(stop):
    """Call stop() (from a daemon thread) once stdin reaches EOF."""
    def wait():
        sys.stdin.read()
        stop()
    threading.Thread(target=wait, daemon=True, name="stdin-watch").start()


def announce(port):
    print(f"port {port}", flush=True)


def serve_asgi(app):
    """Serve an ASGI app with uvicorn on a loopback port; announce the port
    once uvicorn is listening; stop when stdin closes."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off",
                            access_log=False)
    server = uvicorn.Server(config)

    def handshake():
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.01)
        announce(sock.getsockname()[1])

    def stop():
        server.should_exit = True

    threading.Thread(target=handshake, daemon=True).start()
    on_stdin_close(stop)
    server.run(sockets=[sock])
