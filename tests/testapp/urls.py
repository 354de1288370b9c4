"""The hub's URLs plus views that fail, for tests of what a server error looks like (API and elsewhere)."""

from django.urls import path

from config.urls import handler404, handler500  # noqa: F401 - the hub's JSON error pages
from config.urls import urlpatterns as hub_urlpatterns


def boom(request):
    raise RuntimeError("boom (a test of the server error path)")


urlpatterns = [path("api/v1/test-boom/", boom), path("test-boom/", boom), *hub_urlpatterns]
