"""aiohttp under its own runner (AppRunner + TCPSite). aiohttp keeps each
handler in route._handler and wraps class-based views and sub-applications
in its own objects, so a probe must hook the code.

Routes:
  GET /func/{n}         function handler, a line after an await
  GET /view/{n}         class-based web.View (ItemView.get)
  GET /sub/item/{n}     a handler in a sub-application added at /sub
  GET /_debug/state     contract_state.state()
Prints "port N" when serving; exits when stdin closes.
"""
import asyncio
import socket

from aiohttp import web

from contract_state import announce, on_stdin_close, state, watch


async def func_handler(request):
    n = int(request.match_info["n"])
    await asyncio.sleep(0)
    tripled = n * 3  # LINE:async_after_await
    return web.json_response({"n": n, "tripled": tripled})


class ItemView(web.View):
    async def get(self):
        n = int(self.request.match_info["n"])
        return web.json_response({"n": n, "view": f"view-{n}"})


async def sub_handler(request):
    n = int(request.match_info["n"])
    return web.json_response({"n": n, "item": f"item-{n}"})


async def debug_state(request):
    return web.json_response(state())


def make_app():
    app = web.Application()
    app.router.add_get("/func/{n}", func_handler)
    app.router.add_view("/view/{n}", ItemView)
    app.router.add_get("/_debug/state", debug_state)
    sub = web.Application()
    sub.router.add_get("/item/{n}", sub_handler)
    app.add_subapp("/sub", sub)
    return app


for _name, _f in [("func_handler", func_handler), ("ItemView.get", ItemView.get),
                  ("sub_handler", sub_handler)]:
    watch(_name, _f)


async def serve():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    on_stdin_close(lambda: loop.call_soon_threadsafe(stopped.set))
    announce(sock.getsockname()[1])
    await stopped.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve())
