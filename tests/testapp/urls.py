"""The hub's URLs plus a view that fails, for tests of what a server error looks like."""

from django.urls import path

from config.urls import handler404, handler500  # noqa: F401 - the hub's JSON error pages
from config.urls import urlpatterns as hub_urlpatterns


def boom(request):
    raise RuntimeError("boom (a test of the server error path)")


urlpatterns = [path("api/v1/test-boom/", boom), *hub_urlpatterns]
