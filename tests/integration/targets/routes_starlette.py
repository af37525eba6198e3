"""Starlette app (no FastAPI) for the route-coverage tests."""
import types

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route


async def homepage(request):
    return JSONResponse({"hello": "world"})


def sync_page(request):
    return PlainTextResponse("sync")


async def mounted(request):
    return PlainTextResponse("mounted")


async def guarded(request):
    return PlainTextResponse("guarded")


class Stamp:
    """A pure ASGI middleware, used per route (Starlette >= 0.30) or, on
    older Starlette, on a Mount around the route."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def recompiled_copy(func):
    """What a recompiling decorator hands a framework: the same name and
    module, but another code object."""
    copy = types.FunctionType(func.__code__.replace(), func.__globals__,
                              func.__name__, func.__defaults__,
                              func.__closure__)
    copy.__qualname__ = func.__qualname__
    return copy


async def copied(request):
    return PlainTextResponse("copied")


try:
    PER_ROUTE = Route("/guarded", guarded, middleware=[Middleware(Stamp)])
except TypeError:       # Starlette < 0.30: no per-route middleware
    PER_ROUTE = Mount("/guarded", routes=[Route("/", guarded)],
                      middleware=[Middleware(Stamp)])

app = Starlette(routes=[
    Route("/", homepage),
    Route("/sync", sync_page, methods=["GET", "POST"]),
    Mount("/sub", routes=[Route("/page/{n:int}", mounted)]),
    PER_ROUTE,
    Route("/copied", recompiled_copy(copied)),
])
