"""An ASGI service under uvicorn for the stress tests: FastAPI (the host's
3.11, forky's 3.14) or plain Starlette (forky's 3.13, where FastAPI does not
import). Serves GET / -> "ok\\n". Prints "port N" once it listens and exits
when stdin closes.

Usage: stress_asgi.py fastapi|starlette
"""
import asyncio
import socket
import sys
import threading

import uvicorn
from starlette.responses import PlainTextResponse


async def index():
    return PlainTextResponse("ok\n")


def make_app(kind):
    if kind == "fastapi":
        import fastapi

        app = fastapi.FastAPI()
        app.get("/")(index)
        return app
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def endpoint(request):
        return await index()

    return Starlette(routes=[Route("/", endpoint)])


def main():
    app = make_app(sys.argv[1])
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that
    # say so, and without it every response waits on a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            lifespan="off", loop="asyncio", http="h11")
    server = uvicorn.Server(config)

    def watch_stdin():
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(f"port {sock.getsockname()[1]}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
