"""Flask under its threaded development server (werkzeug), on the host's
3.11 (the forky root has no Flask): a view function, a blueprint view, a
view registered with add_url_rule under another endpoint name, and a line
probe in a (sync) view."""
import pytest

from conftest import (Load, Route, args_of, finish_app, int_of, line_locals,
                      probe_case, ret_of, start_app)

M = "flask_app"
ROUTES = [
    Route("view", lambda n: f"/view/{n}",
          lambda n: {"n": n, "doubled": 2 * n}),
    Route("bp", lambda n: f"/bp/item/{n}",
          lambda n: {"n": n, "item": f"item-{n}"}),
    Route("renamed", lambda n: f"/renamed/{n}",
          lambda n: {"n": n, "renamed": n + 100}),
]


@pytest.fixture(scope="module", params=["3.11"])
def served(request):
    app = start_app(M, request.param)
    load = Load(app, ROUTES)
    yield app, load
    load.stop()
    finish_app(app)


def check(served, target, route, path):
    app, load = served
    snap = probe_case(app, load, ROUTES, target, route, path=path)
    n = int_of(args_of(snap)["n"])
    assert load.was_sent(route, n)
    # jsonify returns the app's response class.
    assert ret_of(snap)["type"] == "Response", ret_of(snap)
    return snap


def test_view_function(served):
    check(served, f"{M}:view", "view", "/view/<int:n>")


def test_blueprint_view(served):
    check(served, f"{M}:bp_item", "bp", "/bp/item/<int:n>")


def test_add_url_rule_under_another_name(served):
    check(served, f"{M}:plain", "renamed", "/renamed/<int:n>")


def test_line_in_view(served):
    app, load = served
    line = app.lines["sync_body"]
    snap = probe_case(app, load, ROUTES, f"{M}:view@{line}", "view",
                      path="/view/<int:n>")
    loc = line_locals(snap, line)
    assert load.was_sent("view", int_of(loc["n"]))
    assert "value" not in loc.get("doubled", {}), loc
