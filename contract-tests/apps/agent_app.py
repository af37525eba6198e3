"""The agent's contract-test app: FastAPI under uvicorn, named by
OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (deployment.environment.name)
as a user would name a service, so `pydi agent` finds it by itself.

Routes (n is an int path parameter; every answer is JSON the test checks):
  GET /sync/{n}       sync route, run in the threadpool
  GET /async/{n}      async route
  GET /dep/{n}?scale= a route -> Depends(get_repo) -> Depends(get_store)
  GET /lines/{n}      a sync route whose body has a comment-only line and a
                      blank line (line probes that can never fire)
  GET /_debug/state   contract_state.state()
  GET /_debug/pid     {"pid": os.getpid()}
Prints "port N" when serving; exits when stdin closes.
"""
import asyncio
import os

from fastapi import Depends, FastAPI

from contract_state import serve_asgi, state, watch

app = FastAPI()


@app.get("/sync/{n}")
def sync_route(n: int):
    doubled = n * 2  # LINE:sync_body
    return {"n": n, "doubled": doubled}


@app.get("/async/{n}")
async def async_route(n: int):
    await asyncio.sleep(0)
    tripled = n * 3
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


@app.get("/lines/{n}")
def lines_route(n: int):
    squared = n * n  # LINE:lines_body
    # LINE:lines_comment (this line holds a comment and no code)
    cubed = squared * n  # LINE:lines_after_comment

    total = squared + cubed  # LINE:lines_after_blank (the line above is blank)
    return {"n": n, "squared": squared, "cubed": cubed, "total": total}


@app.get("/_debug/state")
def debug_state():
    return state()


@app.get("/_debug/pid")
def debug_pid():
    return {"pid": os.getpid()}


for _name, _f in [("sync_route", sync_route), ("async_route", async_route),
                  ("get_store", get_store), ("get_repo", get_repo),
                  ("dep_route", dep_route), ("lines_route", lines_route)]:
    watch(_name, _f)


if __name__ == "__main__":
    serve_asgi(app)
