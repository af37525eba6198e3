"""FastAPI app for the route-coverage tests (test_routes_inprocess.py):
every shape of reference FastAPI keeps to a function. Never served: the
helper reads the live route tables, it does not need requests."""
import functools

from fastapi import APIRouter, Depends, FastAPI

app = FastAPI()


def get_settings():
    """A sub-dependency of a sub-dependency."""
    return {"scale": 2}


def get_store(settings=Depends(get_settings)):
    """A sub-dependency (of get_repo)."""
    return {"scale": settings["scale"]}  # LINE:get_store_body


def get_repo(store=Depends(get_store)):
    """A route's direct dependency."""
    return store


class RateLimiter:
    """A callable-instance dependency: FastAPI calls type(x).__call__."""

    def __call__(self):
        return 10


limiter = RateLimiter()


def page_size(default, maximum=100):
    """Reached through functools.partial(page_size, 20)."""
    return min(default, maximum)


@app.get("/items/{item_id}")
async def read_item(item_id: int, repo=Depends(get_repo),
                    limit=Depends(limiter)):
    return {"id": item_id, "scale": repo["scale"], "limit": limit}


@app.get("/sync")
def sync_route(size=Depends(functools.partial(page_size, 20))):
    return {"size": size}


def scaled(factor, value: int = 1):
    return {"value": value * factor}


app.add_api_route("/partial", functools.partial(scaled, 3), methods=["GET"])

router = APIRouter()


@router.get("/users/{user_id}")
async def read_user(user_id: int):
    return {"user": user_id}


app.include_router(router, prefix="/api")
