"""Duffel's calls follow the egress rule (integrations.egress): through the proxy the environment names, direct
for a host in NO_PROXY (`egress_route` runs the test both ways), a flight search through the API against the
fake on a real socket."""

import httpx
import pytest

from .conftest import BASE, one_way, search
from .duffel_fake import FakeDuffel

pytestmark = pytest.mark.django_db


def test_a_search_follows_the_egress_rule(settings, served, user_client, egress_route):
    fake = FakeDuffel()

    def answer(request):
        body = request.content and httpx.Response(200, content=request.content).json()
        status, payload, headers = fake.handle(
            request.method, request.url.path, dict(request.url.params), body or None, dict(request.headers)
        )
        return httpx.Response(status, json=payload, headers=headers)

    duffel = served(answer, BASE)
    settings.DUFFEL_ACCESS_TOKEN, settings.DUFFEL_API_BASE = fake.token, duffel.base
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "duffel": {"requests": {"rate": 1000, "burst": 1000}}}

    response = search(user_client, one_way())

    assert response.status_code in (200, 201), response.json()
    egress_route.check(duffel.base)
