"""A FastAPI service served by uvicorn (stdlib + fastapi + uvicorn only): a
route whose handler depends on a sub-dependency that has a sub-dependency of
its own, the shape pydi must resolve inside a live server.

Lines that tests need carry a `# LINE:name` comment. Prints "port N" once
uvicorn serves and exits when stdin closes.
"""
import socket
import sys
import threading

import uvicorn
from fastapi import Depends, FastAPI

app = FastAPI()

ITEMS = {1: "apple", 2: "pear", 3: "plum"}


def get_store():
    """Sub-dependency of a sub-dependency; a yield dependency (generator)."""
    store = dict(ITEMS)
    yield store  # LINE:get_store_yield


def get_repo(store=Depends(get_store)):
    """The route's sub-dependency."""
    return Repo(store)  # LINE:get_repo_body


class Repo:
    def __init__(self, store):
        self.store = store

    def lookup(self, item_id):
        return self.store.get(item_id)


@app.get("/items/{item_id}")
async def read_item(item_id: int, repo: Repo = Depends(get_repo)):
    name = repo.lookup(item_id)  # LINE:read_item_body
    return {"id": item_id, "name": name}


@app.get("/health")
def health():
    return {"ok": True}


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off",
                            access_log=False)
    server = uvicorn.Server(config)

    def handshake_then_wait_for_stdin():
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.01)
        print(f"port {sock.getsockname()[1]}", flush=True)
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=handshake_then_wait_for_stdin, daemon=True).start()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
