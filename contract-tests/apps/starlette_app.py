"""Starlette (no FastAPI) under uvicorn. Starlette wraps each endpoint at
import (request_response closures in route.app), so a probe must reach the
code through references pydi never sees by name.

Routes:
  GET /async/{n}        async endpoint, a line after an await
  GET /sync/{n}         sync endpoint (run in the threadpool)
  GET /mount/item/{n}   a route inside Mount("/mount")
  GET /mw/{n}           a route with per-route middleware (Tagger adds the
                        header x-tag: mw to its response)
  GET /_debug/state     contract_state.state()
Prints "port N" when serving; exits when stdin closes.
"""
import asyncio
import functools
import inspect
import operator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from contract_state import serve_asgi, state, watch


async def async_endpoint(request):
    n = int(request.path_params["n"])
    await asyncio.sleep(0)
    tripled = n * 3  # LINE:async_after_await
    return JSONResponse({"n": n, "tripled": tripled})


def sync_endpoint(request):
    n = int(request.path_params["n"])
    doubled = n * 2  # LINE:sync_body

    # LINE:sync_blank (the line above is blank on purpose)
    return JSONResponse({"n": n, "doubled": doubled})  # LINE:sync_return


async def mounted_endpoint(request):
    n = int(request.path_params["n"])
    return JSONResponse({"n": n, "item": f"item-{n}"})


async def mw_endpoint(request):
    n = int(request.path_params["n"])
    return JSONResponse({"n": n, "squared": n * n})


class Tagger:
    """Pure ASGI middleware: adds x-tag to the wrapped route's answers."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def tagged_send(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (b"x-tag", b"mw")]
            await send(message)
        await self.app(scope, receive, tagged_send)


async def debug_state(request):
    return JSONResponse(state())


def mw_route():
    """Per-route middleware: Route(middleware=...) from Starlette 0.28 on;
    older Starlette (Debian 12 has 0.26) gets the same shape by hand --
    route.app wrapped in the middleware, exactly what Route does itself."""
    if "middleware" in inspect.signature(Route.__init__).parameters:
        return Route("/mw/{n:int}", mw_endpoint,
                     middleware=[Middleware(Tagger)])
    route = Route("/mw/{n:int}", mw_endpoint)
    route.app = Tagger(route.app)
    return route


routes = [
    Route("/async/{n:int}", async_endpoint),
    Route("/sync/{n:int}", sync_endpoint),
    Mount("/mount", routes=[Route("/item/{n:int}", mounted_endpoint)]),
    mw_route(),
    Route("/_debug/state", debug_state),
]
app = Starlette(routes=routes)

builtin_partial = functools.partial(max, 0)
pick_first = operator.itemgetter(0)

for _f in (async_endpoint, sync_endpoint, mounted_endpoint, mw_endpoint):
    watch(_f.__name__, _f)


if __name__ == "__main__":
    serve_asgi(app)
