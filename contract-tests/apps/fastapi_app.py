"""FastAPI under uvicorn: every shape of callable FastAPI captures at
import and calls later through its own references (route.endpoint,
Dependant trees, the threadpool), so a probe must hook the code, not a name.

Routes (n is an int path parameter; every answer is JSON the test checks):
  GET /sync/{n}       sync route, run in the threadpool
  GET /async/{n}      async route, a line after an await
  GET /dep/{n}?scale= a route -> Depends(get_repo) -> Depends(get_store)
  GET /limited/{n}    a callable-instance dependency (Limiter.__call__)
  GET /partial/{n}    a functools.partial endpoint (scale with factor 3)
  GET /v1/item/{n}    a route on an APIRouter included with prefix /v1
  GET /_debug/state   contract_state.state()
Prints "port N" when serving; exits when stdin closes.
"""
import asyncio
import functools
import operator

from fastapi import APIRouter, Depends, FastAPI

from contract_state import serve_asgi, state, watch

app = FastAPI()


@app.get("/sync/{n}")
def sync_route(n: int):
    doubled = n * 2  # LINE:sync_body

    # LINE:sync_blank (the line above is blank on purpose)
    return {"n": n, "doubled": doubled}  # LINE:sync_return


@app.get("/async/{n}")
async def async_route(n: int):
    await asyncio.sleep(0)
    tripled = n * 3  # LINE:async_after_await
    return {"n": n, "tripled": tripled}


def get_store(scale: int = 1):
    """The sub-dependency of a sub-dependency."""
    return {"scale": scale}


class Repo:
    def __init__(self, n, store):
        self.n = n
        self.store = store

    def value(self):
        return self.n * self.store["scale"]


def get_repo(n: int, store: dict = Depends(get_store)):
    """The route's sub-dependency."""
    return Repo(n, store)


@app.get("/dep/{n}")
async def dep_route(n: int, repo: Repo = Depends(get_repo)):
    return {"n": n, "value": repo.value()}


class Limiter:
    """A callable instance used as a dependency: FastAPI calls the
    instance, whose code is Limiter.__call__."""

    def __init__(self, limit):
        self.limit = limit

    def __call__(self, n: int):
        return min(n, self.limit)


limiter = Limiter(50)


@app.get("/limited/{n}")
def limited_route(n: int, capped: int = Depends(limiter)):
    return {"n": n, "capped": capped}


def scale(factor: int, n: int):
    return {"n": n, "scaled": factor * n}


scaled = functools.partial(scale, 3)
app.add_api_route("/partial/{n}", scaled, methods=["GET"])

router = APIRouter()


@router.get("/item/{n}")
async def router_item(n: int):
    return {"n": n, "item": f"item-{n}"}


app.include_router(router, prefix="/v1")


@app.get("/_debug/state")
def debug_state():
    return state()


# Targets that have no Python code of their own (line probes must be
# refused with LINE_NOT_EXECUTABLE): a partial of a builtin and a callable
# instance implemented in C, both bound to module names.
builtin_partial = functools.partial(max, 0)
pick_first = operator.itemgetter(0)

for _name, _f in [("sync_route", sync_route), ("async_route", async_route),
                  ("get_store", get_store), ("get_repo", get_repo),
                  ("Limiter.__call__", Limiter.__call__), ("scale", scale),
                  ("router_item", router_item), ("dep_route", dep_route)]:
    watch(_name, _f)


if __name__ == "__main__":
    serve_asgi(app)
