"""Starlette without FastAPI under uvicorn, on the host's 3.11 (Starlette
0.26) and on 3.13 and 3.14 in the forky root (Starlette 1.x): async and
sync endpoints, a route inside Mount, and a route with per-route
middleware (it fires, or pydi reports ERROR naming the route -- never
READY and silent); line probes in both kinds of endpoint; and
LINE_NOT_EXECUTABLE, which this app also covers on 3.13."""
import pytest

from conftest import (Load, Route, args_of, entry_of, finish_app,
                      LINE_NOT_EXECUTABLE_CASES, line_not_executable,
                      int_of, line_locals, probe_case, ret_of, start_app,
                      str_of, trace)

M = "starlette_app"
ROUTES = [
    Route("async", lambda n: f"/async/{n}",
          lambda n: {"n": n, "tripled": 3 * n}),
    Route("sync", lambda n: f"/sync/{n}",
          lambda n: {"n": n, "doubled": 2 * n}),
    Route("mount", lambda n: f"/mount/item/{n}",
          lambda n: {"n": n, "item": f"item-{n}"}),
    Route("mw", lambda n: f"/mw/{n}",
          lambda n: {"n": n, "squared": n * n}, header=("x-tag", "mw")),
]


@pytest.fixture(scope="module", params=["3.11", "3.13", "3.14"])
def served(request):
    app = start_app(M, request.param)
    load = Load(app, ROUTES)
    yield app, load
    load.stop()
    finish_app(app)


def request_n(load, route, prefix, request):
    """The request argument is a Starlette Request whose scope path is one
    the load sent to route: return its n."""
    assert request["type"] == "Request", request
    scope = request["fields"]["scope"]
    path = str_of(entry_of(scope, "path"))
    if not path.startswith(prefix):
        # Starlette before 1.0 strips a Mount's prefix from the path and
        # moves it into root_path.
        path = str_of(entry_of(scope, "root_path")) + path
    assert path.startswith(prefix), path
    n = int(path[len(prefix):])
    assert load.was_sent(route, n), path
    return n


def check_response(value, body):
    """A JSONResponse; its body, where captured, is the expected JSON."""
    assert value["type"] == "JSONResponse", value
    captured = value.get("fields", {}).get("body", {})
    if "value" in captured:
        assert body in captured["value"], (body, captured)


def endpoint_case(served, name, route, prefix, path, answer):
    app, load = served
    snap = probe_case(app, load, ROUTES, f"{M}:{name}", route, path=path)
    n = request_n(load, route, prefix, args_of(snap)["request"])
    check_response(ret_of(snap), answer(n))


def test_async_endpoint(served):
    endpoint_case(served, "async_endpoint", "async", "/async/",
                  "/async/{n}", lambda n: f'"tripled":{3 * n}')


def test_sync_endpoint(served):
    endpoint_case(served, "sync_endpoint", "sync", "/sync/", "/sync/{n}",
                  lambda n: f'"doubled":{2 * n}')


def test_route_inside_mount(served):
    endpoint_case(served, "mounted_endpoint", "mount", "/mount/item/",
                  "/mount/item/{n}", lambda n: f'"item":"item-{n}"')


def test_route_with_per_route_middleware(served):
    """Fires (the middleware still runs: the load checks its header), or
    pydi says which route it cannot reach."""
    app, load = served
    run = trace(app, f"{M}:mw_endpoint", "--count", "1")
    if run.status("ERROR"):
        assert run.rc == 2, run
        assert "/mw" in run.status("ERROR")[0]["message"], run
        return
    endpoint_case(served, "mw_endpoint", "mw", "/mw/", "/mw/{n}",
                  lambda n: f'"squared":{n * n}')


def test_line_in_sync_endpoint(served):
    app, load = served
    line = app.lines["sync_body"]
    snap = probe_case(app, load, ROUTES, f"{M}:sync_endpoint@{line}", "sync",
                      path="/sync/{n}")
    loc = line_locals(snap, line)
    assert load.was_sent("sync", int_of(loc["n"]))
    assert loc["request"]["type"] == "Request"
    assert "value" not in loc.get("doubled", {}), loc


def test_line_in_async_endpoint_after_await(served):
    app, load = served
    line = app.lines["async_after_await"]
    snap = probe_case(app, load, ROUTES, f"{M}:async_endpoint@{line}",
                      "async", path="/async/{n}")
    loc = line_locals(snap, line)
    assert load.was_sent("async", int_of(loc["n"]))
    assert "value" not in loc.get("tripled", {}), loc


# -- LINE_NOT_EXECUTABLE --

@pytest.mark.parametrize("case", LINE_NOT_EXECUTABLE_CASES)
def test_line_not_executable(served, case):
    line_not_executable(served[0], M, "sync_endpoint", case)
