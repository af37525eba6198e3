"""Django project (settings + urlconf in this one module) for the
route-coverage tests."""
from django.conf import settings

settings.configure(DEBUG=True, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
                   SECRET_KEY="pydi-test", INSTALLED_APPS=[])

import django  # noqa: E402

django.setup()

from django.http import HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views import View  # noqa: E402


def item_detail(request, pk):
    return HttpResponse(f"item {pk}")


class OrderView(View):
    def get(self, request, pk):
        return HttpResponse(f"order {pk}")

    def post(self, request, pk):
        return HttpResponse("posted")


api_patterns = [
    path("orders/<int:pk>/", OrderView.as_view()),
]

urlpatterns = [
    path("items/<int:pk>/", item_detail),
    path("api/", include(api_patterns)),
]
