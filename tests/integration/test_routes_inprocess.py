"""Route coverage, in process: the helper walks the live route tables of
FastAPI, Starlette, aiohttp, Flask and Django and reports, in the resolve
and hook replies, which routes reach the probed code ("routes"), and
refuses a hook that a route could never fire (a route holding a copy of the
function with other code).

targets/routes_driver.py imports one targets/routes_<framework>.py app and
the built helper, then resolves, hooks and unhooks each target through
dispatch(). Host 3.11 (Debian's frameworks): all five; the forky root:
Starlette and aiohttp on 3.13, FastAPI, Starlette and aiohttp on 3.14.
"""
import functools
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import HERE, HOST_PYTHON, SOURCE, line_markers, rootfs_path

TARGETS = os.path.join(HERE, "targets")
DRIVER = os.path.join(TARGETS, "routes_driver.py")
HELPER = os.environ.get("PYDI_HELPER", os.path.join(
    SOURCE, "build", "userspace-rebind", "_pydi_helper.abi3.so"))
FASTAPI_LINES = line_markers(os.path.join(TARGETS, "routes_fastapi.py"))

RUNS = [("3.11", "fastapi"), ("3.11", "starlette"), ("3.11", "aiohttp"),
        ("3.11", "flask"), ("3.11", "django"),
        ("3.13", "starlette"), ("3.13", "aiohttp"),
        ("3.14", "fastapi"), ("3.14", "starlette"), ("3.14", "aiohttp")]


def route(framework, methods, path, role, via):
    return {"framework": framework, "methods": methods, "path": path,
            "role": role, "via": via}


def fastapi_expected(version):
    items = "GET /items/{item_id}"
    return {
        "routes_fastapi:read_item": [route(
            "fastapi", ["GET"], "/items/{item_id}", "endpoint",
            f"endpoint read_item of {items}")],
        "routes_fastapi:sync_route": [route(
            "fastapi", ["GET"], "/sync", "endpoint",
            "endpoint sync_route of GET /sync")],
        "routes_fastapi:get_repo": [route(
            "fastapi", ["GET"], "/items/{item_id}", "dependency",
            f"Depends(get_repo) of {items}")],
        "routes_fastapi:get_store": [route(
            "fastapi", ["GET"], "/items/{item_id}", "dependency",
            f"Depends(get_store) in Depends(get_repo) of {items}")],
        f"routes_fastapi:get_store@{FASTAPI_LINES['get_store_body']}": [
            route("fastapi", ["GET"], "/items/{item_id}", "dependency",
                  f"Depends(get_store) in Depends(get_repo) of {items}")],
        "routes_fastapi:get_settings": [route(
            "fastapi", ["GET"], "/items/{item_id}", "dependency",
            f"Depends(get_settings) in Depends(get_store) in "
            f"Depends(get_repo) of {items}")],
        "routes_fastapi:RateLimiter.__call__": [route(
            "fastapi", ["GET"], "/items/{item_id}", "dependency",
            f"Depends(RateLimiter instance) of {items}")],
        "routes_fastapi:page_size": [route(
            "fastapi", ["GET"], "/sync", "dependency",
            "Depends(partial(page_size)) of GET /sync")],
        "routes_fastapi:scaled": [route(
            "fastapi", ["GET"], "/partial", "endpoint",
            "endpoint partial(scaled) of GET /partial")],
        "routes_fastapi:read_user": [route(
            "fastapi", ["GET"], "/api/users/{user_id}", "endpoint",
            "endpoint read_user of GET /api/users/{user_id}")],
    }


def starlette_expected(version):
    get = ["GET", "HEAD"]
    if version == "3.11":
        # Starlette 0.26: no per-route middleware; the fixture puts the
        # middleware on a Mount around the route instead.
        guarded = [route("starlette", get, "/guarded/", "endpoint",
                         "endpoint guarded of GET,HEAD /guarded/ behind "
                         "Mount /guarded middleware Stamp")]
        stamp = [route("starlette", ["*"], "/guarded/*", "middleware",
                       "Stamp.__call__ (middleware of Mount /guarded)")]
    else:
        guarded = [route("starlette", get, "/guarded", "endpoint",
                         "endpoint guarded behind route middleware Stamp "
                         "of GET,HEAD /guarded")]
        stamp = [route("starlette", get, "/guarded", "middleware",
                       "Stamp.__call__ (route middleware of GET,HEAD "
                       "/guarded)")]
    return {
        "routes_starlette:homepage": [route(
            "starlette", get, "/", "endpoint", "endpoint homepage of "
            "GET,HEAD /")],
        "routes_starlette:sync_page": [route(
            "starlette", ["GET", "HEAD", "POST"], "/sync", "endpoint",
            "endpoint sync_page of GET,HEAD,POST /sync")],
        "routes_starlette:mounted": [route(
            "starlette", get, "/sub/page/{n:int}", "endpoint",
            "endpoint mounted of GET,HEAD /sub/page/{n:int}")],
        "routes_starlette:guarded": guarded,
        "routes_starlette:Stamp.__call__": stamp,
        # A helper no route reaches.
        "routes_starlette:recompiled_copy": [],
    }


def aiohttp_expected(version):
    return {
        "routes_aiohttp:hello": [route(
            "aiohttp", ["GET", "HEAD"], "/hello", "endpoint",
            "handler hello of GET,HEAD /hello")],
        "routes_aiohttp:ItemView.get": [route(
            "aiohttp", ["GET"], "/items/{id}", "endpoint",
            "ItemView.get (web.View) of GET /items/{id}")],
        "routes_aiohttp:ItemView.post": [route(
            "aiohttp", ["POST"], "/items/{id}", "endpoint",
            "ItemView.post (web.View) of POST /items/{id}")],
        "routes_aiohttp:sub_handler": [route(
            "aiohttp", ["POST"], "/sub/things/{name}", "endpoint",
            "handler sub_handler of POST /sub/things/{name}")],
    }


def flask_expected(version):
    return {
        "routes_flask:index": [route(
            "flask", ["GET", "HEAD"], "/", "view",
            "view index (endpoint 'index') of GET,HEAD /")],
        "routes_flask:cart": [route(
            "flask", ["GET", "HEAD", "POST"], "/shop/cart", "view",
            "view cart (endpoint 'shop.cart') of GET,HEAD,POST /shop/cart")],
        "routes_flask:report_view": [route(
            "flask", ["GET", "HEAD"], "/reports/<int:year>", "view",
            "view report_view (endpoint 'yearly') of GET,HEAD "
            "/reports/<int:year>")],
    }


def django_expected(version):
    orders = "/api/orders/<int:pk>/"
    return {
        "routes_django:item_detail": [route(
            "django", ["*"], "/items/<int:pk>/", "view",
            "view item_detail of /items/<int:pk>/")],
        "routes_django:OrderView.get": [route(
            "django", ["GET", "HEAD"], orders, "view",
            f"OrderView.get (class-based view) of GET,HEAD {orders}")],
        "routes_django:OrderView.post": [route(
            "django", ["POST"], orders, "view",
            f"OrderView.post (class-based view) of POST {orders}")],
    }


EXPECTED = {"fastapi": fastapi_expected, "starlette": starlette_expected,
            "aiohttp": aiohttp_expected, "flask": flask_expected,
            "django": django_expected}

# Starlette fixture: /copied holds a recompiled copy of copied().
UNREACHABLE = {"starlette": "routes_starlette:copied"}


@functools.lru_cache(maxsize=None)
def drive(version, framework):
    """target -> {"resolve", "hook", "unhook"} replies."""
    if not os.path.exists(HELPER):
        pytest.fail(f"the helper is not built: {HELPER}")
    targets = list(EXPECTED[framework](version))
    if framework in UNREACHABLE:
        targets.append(UNREACHABLE[framework])
    files = [DRIVER, HELPER, os.path.join(TARGETS,
                                          f"routes_{framework}.py")]
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    if version == "3.11":
        host = inside = tempfile.mkdtemp(prefix="pydi-routes-")
        argv = [HOST_PYTHON]
    else:
        root = rootfs_path()
        python = f"/usr/bin/python{version}"
        if not os.access(root + python, os.X_OK):
            pytest.skip(f"{python} missing in {root}")
        inside = f"/tmp/pydi-routes-{os.getpid()}-{version}-{framework}"
        host = root + inside
        shutil.rmtree(host, ignore_errors=True)
        os.makedirs(host)
        argv = [shutil.which("chroot") or "/usr/sbin/chroot", root, python]
    for path in files:
        shutil.copy(path, host)
    try:
        proc = subprocess.run(
            argv + [f"{inside}/routes_driver.py", inside,
                    f"routes_{framework}", *targets],
            capture_output=True, text=True, env=env, timeout=300)
    finally:
        shutil.rmtree(host, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    return {r["target"]: r for r in records}


def _cases():
    for version, framework in RUNS:
        yield pytest.param(version, framework, id=f"{version}-{framework}")


@pytest.mark.parametrize("version,framework", list(_cases()))
def test_routes_reaching_each_target(version, framework):
    results = drive(version, framework)
    failures = []
    for target, expected in EXPECTED[framework](version).items():
        record = results[target]
        resolve, hook = record["resolve"], record["hook"]
        if not resolve.get("ok"):
            failures.append(f"{target}: resolve failed: {resolve}")
            continue
        if resolve.get("routes") != expected:
            failures.append(f"{target}: resolve routes "
                            f"{resolve.get('routes')} != {expected}")
        if resolve.get("unreachable_routes") != []:
            failures.append(f"{target}: unreachable "
                            f"{resolve.get('unreachable_routes')}")
        if not hook.get("ok"):
            failures.append(f"{target}: hook failed: {hook}")
        elif hook.get("routes") != expected:
            failures.append(f"{target}: hook routes {hook.get('routes')} "
                            f"!= {expected}")
        if not record["unhook"].get("unhooked"):
            failures.append(f"{target}: unhook: {record['unhook']}")
        for reply in (resolve, hook):
            for key in ("routes_errors", "routes_truncated"):
                if key in reply:
                    failures.append(f"{target}: {key}: {reply[key]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("framework", [f for v, f in RUNS if v == "3.11"])
def test_route_walk_leaves_instance_values_inline(framework):
    """Reading a route table must not create the __dict__ of the objects it
    reads: on 3.11 (and 3.12) that moves an instance's inline values into a
    dict for good, and every attribute access the app makes on it per
    request gets slower (bench item 1: 3 % of a FastAPI service's requests).
    Checked on 3.11, where gc's traversal tells the two apart. One
    exception: Django's URLResolver keeps url_patterns in a cached_property,
    whose value lives in the instance's __dict__ -- Django's own first
    resolve creates that dict, so a served app has it already; the fixture
    has served nothing."""
    record = drive("3.11", framework)["(instance values)"]
    assert record["checked"] > 0, "no framework object with inline values"
    allowed = {"django.urls.resolvers.URLResolver"}
    assert set(record["materialized"]) <= allowed, record


@pytest.mark.parametrize("version", ["3.11", "3.13", "3.14"])
def test_route_holding_a_recompiled_copy_is_an_error(version):
    """A route whose endpoint is a copy with other code (same module and
    qualname) never fires a probe on the module's function: the hook is
    refused naming the route, and nothing is left hooked."""
    target = UNREACHABLE["starlette"]
    record = drive(version, "starlette")[target]
    resolve, hook = record["resolve"], record["hook"]
    assert resolve["ok"] and resolve["routes"] == []
    assert [(u["methods"], u["path"]) for u in
            resolve["unreachable_routes"]] == [(["GET", "HEAD"], "/copied")]
    assert not hook["ok"]
    assert hook["error_cause"] == "RUNTIME_ERROR"
    assert "route GET,HEAD /copied (starlette" in hook["message"]
    assert "recompiled" in hook["message"]
    assert record["unhook"]["unhooked"] is False
