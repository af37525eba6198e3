"""FastAPI under uvicorn, on the host's 3.11 (FastAPI 0.92) and on 3.14 in
the forky root (the only interpreter there FastAPI imports under): every
shape of callable FastAPI calls through its own references fires a probe
with the right arguments and return value; line probes in a sync route and
in an async route after an await; LINE_NOT_EXECUTABLE with the nearest
executable lines named."""
import pytest

from conftest import (Load, Route, args_of, dict_of, finish_app,
                      LINE_NOT_EXECUTABLE_CASES, line_not_executable,
                      int_of, line_locals, probe_case, ret_of, start_app)

M = "fastapi_app"
ROUTES = [
    Route("sync", lambda n: f"/sync/{n}",
          lambda n: {"n": n, "doubled": 2 * n}),
    Route("async", lambda n: f"/async/{n}",
          lambda n: {"n": n, "tripled": 3 * n}),
    Route("dep", lambda n: f"/dep/{n}?scale={n % 5 + 1}",
          lambda n: {"n": n, "value": n * (n % 5 + 1)}),
    Route("limited", lambda n: f"/limited/{n % 100}",
          lambda n: {"n": n % 100, "capped": min(n % 100, 50)}),
    Route("partial", lambda n: f"/partial/{n}",
          lambda n: {"n": n, "scaled": 3 * n}),
    Route("router", lambda n: f"/v1/item/{n}",
          lambda n: {"n": n, "item": f"item-{n}"}),
]


@pytest.fixture(scope="module", params=["3.11", "3.14"])
def served(request):
    app = start_app(M, request.param)
    load = Load(app, ROUTES)
    yield app, load
    load.stop()
    finish_app(app)


def case(served, target, route, path, *args):
    app, load = served
    snap = probe_case(app, load, ROUTES, target, route, *args, path=path)
    return snap, load


def test_sync_route_in_threadpool(served):
    snap, load = case(served, f"{M}:sync_route", "sync", "/sync/{n}")
    n = int_of(args_of(snap)["n"])
    assert load.was_sent("sync", n)
    assert dict_of(ret_of(snap)) == {"n": n, "doubled": 2 * n}


def test_async_route(served):
    snap, load = case(served, f"{M}:async_route", "async", "/async/{n}")
    n = int_of(args_of(snap)["n"])
    assert load.was_sent("async", n)
    assert dict_of(ret_of(snap)) == {"n": n, "tripled": 3 * n}


def test_depends_sub_dependency(served):
    snap, load = case(served, f"{M}:get_repo", "dep", "/dep/{n}")
    a = args_of(snap)
    n = int_of(a["n"])
    assert load.was_sent("dep", n)
    assert dict_of(a["store"]) == {"scale": n % 5 + 1}
    repo = ret_of(snap)
    assert repo["type"] == "Repo", repo
    assert int_of(repo["fields"]["n"]) == n


def test_sub_dependency_of_sub_dependency(served):
    snap, load = case(served, f"{M}:get_store", "dep", "/dep/{n}")
    scale = int_of(args_of(snap)["scale"])
    assert 1 <= scale <= 5
    assert dict_of(ret_of(snap)) == {"scale": scale}


def test_callable_instance_dependency(served):
    # The target names the instance; its code is Limiter.__call__.
    snap, load = case(served, f"{M}:limiter", "limited", "/limited/{n}")
    a = args_of(snap)
    assert a["self"]["type"] == "Limiter", a["self"]
    assert int_of(a["self"]["fields"]["limit"]) == 50
    n = int_of(a["n"])
    assert 0 <= n < 100
    assert int_of(ret_of(snap)) == min(n, 50)


def test_partial_target(served):
    # The target names the partial; its code is scale's, factor bound to 3.
    snap, load = case(served, f"{M}:scaled", "partial", "/partial/{n}")
    a = args_of(snap)
    assert int_of(a["factor"]) == 3
    n = int_of(a["n"])
    assert load.was_sent("partial", n)
    assert dict_of(ret_of(snap)) == {"n": n, "scaled": 3 * n}


def test_router_with_prefix(served):
    snap, load = case(served, f"{M}:router_item", "router", "/v1/item/{n}")
    n = int_of(args_of(snap)["n"])
    assert load.was_sent("router", n)
    assert dict_of(ret_of(snap)) == {"n": n, "item": f"item-{n}"}


def test_line_in_sync_route(served):
    app, _ = served
    line = app.lines["sync_body"]
    snap, load = case(served, f"{M}:sync_route@{line}", "sync", "/sync/{n}")
    loc = line_locals(snap, line)
    assert load.was_sent("sync", int_of(loc["n"]))
    assert "value" not in loc.get("doubled", {}), loc   # not yet assigned


def test_line_in_async_route_after_await(served):
    app, _ = served
    line = app.lines["async_after_await"]
    snap, load = case(served, f"{M}:async_route@{line}", "async",
                      "/async/{n}")
    loc = line_locals(snap, line)
    assert load.was_sent("async", int_of(loc["n"]))
    assert "value" not in loc.get("tripled", {}), loc


# -- LINE_NOT_EXECUTABLE --

@pytest.mark.parametrize("case", LINE_NOT_EXECUTABLE_CASES)
def test_line_not_executable(served, case):
    line_not_executable(served[0], M, "sync_route", case)
