"""Django under runserver's threaded WSGI server, on the host's 3.11 (the
forky root has no Django): a function view and a class-based view's
method, both reached through Django's URL resolver."""
import pytest

from conftest import (Load, Route, args_of, finish_app, int_of, probe_case,
                      ret_of, start_app)

M = "django_app"
ROUTES = [
    Route("func", lambda n: f"/func/{n}",
          lambda n: {"n": n, "doubled": 2 * n}),
    Route("cbv", lambda n: f"/cbv/{n}",
          lambda n: {"n": n, "view": f"view-{n}"}),
]


@pytest.fixture(scope="module", params=["3.11"])
def served(request):
    app = start_app(M, request.param)
    load = Load(app, ROUTES)
    yield app, load
    load.stop()
    finish_app(app)


def test_function_view(served):
    app, load = served
    snap = probe_case(app, load, ROUTES, f"{M}:func_view", "func",
                      path="func/<int:n>")
    a = args_of(snap)
    assert a["request"]["type"] == "WSGIRequest", a
    assert load.was_sent("func", int_of(a["n"]))
    assert ret_of(snap)["type"] == "JsonResponse", ret_of(snap)


def test_class_based_view_method(served):
    app, load = served
    snap = probe_case(app, load, ROUTES, f"{M}:ItemView.get", "cbv",
                      path="cbv/<int:n>")
    a = args_of(snap)
    assert a["self"]["type"] == "ItemView", a
    assert a["request"]["type"] == "WSGIRequest", a
    assert load.was_sent("cbv", int_of(a["n"]))
    assert ret_of(snap)["type"] == "JsonResponse", ret_of(snap)
