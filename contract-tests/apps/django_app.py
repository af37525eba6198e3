"""Django in one file, served by runserver's own threaded WSGI server
(django.core.servers.basehttp). Django holds views in URL resolver
patterns and class-based views behind View.as_view() closures.

Routes:
  GET /func/{n}         function view
  GET /cbv/{n}          class-based view (ItemView.get)
  GET /_debug/state     contract_state.state()
Prints "port N" when serving; exits when stdin closes.
"""
import sys

import django
from django.conf import settings

settings.configure(DEBUG=False, ALLOWED_HOSTS=["127.0.0.1", "localhost"],
                   ROOT_URLCONF=__name__, SECRET_KEY="contract-tests",
                   MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True)
django.setup()

from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views import View  # noqa: E402

from contract_state import announce, on_stdin_close, state, watch  # noqa: E402


def func_view(request, n):
    return JsonResponse({"n": n, "doubled": n * 2})


class ItemView(View):
    def get(self, request, n):
        return JsonResponse({"n": n, "view": f"view-{n}"})


def debug_state(request):
    return JsonResponse(state())


urlpatterns = [
    path("func/<int:n>", func_view),
    path("cbv/<int:n>", ItemView.as_view()),
    path("_debug/state", debug_state),
]

for _name, _f in [("func_view", func_view), ("ItemView.get", ItemView.get)]:
    watch(_name, _f)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    # The module runs as __main__; Django imports ROOT_URLCONF by name, so
    # make that name this very module instead of a second copy.
    sys.modules.setdefault("django_app", sys.modules[__name__])
    settings.ROOT_URLCONF = "django_app"
    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(get_wsgi_application())
    on_stdin_close(server.shutdown)
    announce(server.server_port)
    server.serve_forever()
