"""aiohttp under its own runner, on the host's 3.11 (aiohttp 3.8) and on
3.13 and 3.14 in the forky root (aiohttp 3.14): a function handler, a
class-based web.View method, a handler in a sub-application, and a line
probe in a handler after an await."""
import pytest

from conftest import (Load, Route, args_of, finish_app, int_of, line_locals,
                      probe_case, ret_of, start_app)

M = "aiohttp_app"
ROUTES = [
    Route("func", lambda n: f"/func/{n}",
          lambda n: {"n": n, "tripled": 3 * n}),
    Route("view", lambda n: f"/view/{n}",
          lambda n: {"n": n, "view": f"view-{n}"}),
    Route("sub", lambda n: f"/sub/item/{n}",
          lambda n: {"n": n, "item": f"item-{n}"}),
]


@pytest.fixture(scope="module", params=["3.11", "3.13", "3.14"])
def served(request):
    app = start_app(M, request.param)
    load = Load(app, ROUTES)
    yield app, load
    load.stop()
    finish_app(app)


def check_response(value, body):
    """A web.Response; its body, where captured, is the expected JSON."""
    assert value["type"] == "Response", value
    captured = value.get("fields", {}).get("_body", {})
    if "value" in captured:
        assert body in captured["value"], (body, captured)


def test_function_handler(served):
    app, load = served
    snap = probe_case(app, load, ROUTES, f"{M}:func_handler", "func",
                      path="/func/{n}")
    assert args_of(snap)["request"]["type"] == "Request", args_of(snap)
    check_response(ret_of(snap), '"tripled": ')


def test_class_based_view_method(served):
    app, load = served
    snap = probe_case(app, load, ROUTES, f"{M}:ItemView.get", "view",
                      path="/view/{n}")
    assert args_of(snap)["self"]["type"] == "ItemView", args_of(snap)
    check_response(ret_of(snap), '"view": "view-')


def test_sub_application_handler(served):
    app, load = served
    snap = probe_case(app, load, ROUTES, f"{M}:sub_handler", "sub",
                      path="/sub/item/{n}")
    assert args_of(snap)["request"]["type"] == "Request", args_of(snap)
    check_response(ret_of(snap), '"item": "item-')


def test_line_in_handler_after_await(served):
    app, load = served
    line = app.lines["async_after_await"]
    snap = probe_case(app, load, ROUTES, f"{M}:func_handler@{line}", "func",
                      path="/func/{n}")
    loc = line_locals(snap, line)
    assert load.was_sent("func", int_of(loc["n"]))
    assert loc["request"]["type"] == "Request", loc
    assert "value" not in loc.get("tripled", {}), loc
