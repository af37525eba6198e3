"""aiohttp app for the route-coverage tests."""
from aiohttp import web


async def hello(request):
    return web.Response(text="hello")


class ItemView(web.View):
    async def get(self):
        return web.Response(text="item")

    async def post(self):
        return web.Response(text="created")


async def sub_handler(request):
    return web.Response(text="sub")


def make_app():
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_view("/items/{id}", ItemView)
    sub = web.Application()
    sub.router.add_post("/things/{name}", sub_handler)
    app.add_subapp("/sub", sub)
    return app


# Held only by this list, as a server would hold it: found among live
# objects, not through a module global named app.
_SERVING = [make_app()]
