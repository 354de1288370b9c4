"""The lean ack path: webhook routes run through WEBHOOK_MIDDLEWARE only; every other route is untouched."""

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

from integrations.models import WebhookEvent
from integrations.webhooks.registry import VERIFIERS
from tests.integrations import webhook_provider as hubtest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def hubtest_provider(monkeypatch, settings):
    settings.HUBTEST_WEBHOOK_SECRET = hubtest.SECRET
    monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, hubtest.verify)


def deliver(client, event_id="evt_fast", path="/webhooks/hubtest/"):
    body = hubtest.event_body(event_id)
    return client.post(path, body, content_type="application/json", HTTP_X_HUBTEST_SIGNATURE=hubtest.sign(body))


def test_a_delivery_skips_the_browser_middleware_but_keeps_its_request_id():
    resp = Client().post(
        "/webhooks/hubtest/",
        hubtest.event_body("evt_rid"),
        content_type="application/json",
        HTTP_X_HUBTEST_SIGNATURE=hubtest.sign(hubtest.event_body("evt_rid")),
        HTTP_X_REQUEST_ID="req-abc-123",
    )
    assert resp.status_code == 200 and resp.json()["status"] == "received"
    assert resp["X-Request-ID"] == "req-abc-123"
    # No clickjacking, session or security middleware ran for it.
    assert "X-Frame-Options" not in resp and "Cookie" not in resp.get("Vary", "")
    assert "X-Content-Type-Options" not in resp
    assert WebhookEvent.objects.filter(event_id="evt_rid").exists()


def test_other_routes_still_get_the_full_chain(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp["X-Frame-Options"] == "DENY" and resp["X-Request-ID"]


def test_the_fast_path_can_be_switched_off(settings):
    settings.WEBHOOK_FAST_PATH_PREFIX = ""  # read when the handler loads its middleware: a new client
    resp = deliver(Client())
    assert resp.status_code == 200 and resp["X-Frame-Options"] == "DENY"


def test_an_unknown_provider_is_still_a_json_404():
    resp = Client().post("/webhooks/nosuch/", b"{}", content_type="application/json")
    assert resp.status_code == 404 and resp.json()["error"] == "unknown_webhook"


def test_a_path_that_does_not_resolve_goes_down_the_full_chain():
    resp = Client().get("/webhooks/hubtest")  # no slash: CommonMiddleware's redirect, from the full chain
    assert resp.status_code == 301 and resp["Location"] == "/webhooks/hubtest/"


def test_a_crash_in_a_webhook_view_is_the_json_500(monkeypatch):
    def broken(request):
        raise RuntimeError("verifier bug")

    monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, broken)
    client = Client(raise_request_exception=False)
    resp = deliver(client, path="/webhooks/hubtest/")
    assert resp.status_code == 500
    assert resp.json()["error"] == "server_error"
    assert resp["X-Request-ID"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("hop_threads", [0, 4], ids=["django-thread", "db-hop-threads"])
def test_under_asgi_a_delivery_takes_the_same_short_path(settings, hop_threads):
    settings.DB_HOP_THREADS = hop_threads  # the web server's pool runs deliveries on threads of their own
    body = hubtest.event_body("evt_async")

    async def post():
        return await AsyncClient().post(
            "/webhooks/hubtest/",
            body,
            content_type="application/json",
            headers={"X-Hubtest-Signature": hubtest.sign(body)},
        )

    resp = async_to_sync(post)()
    assert resp.status_code == 200 and resp.json()["status"] == "received"
    assert "X-Frame-Options" not in resp and resp["X-Request-ID"]
    assert WebhookEvent.objects.filter(event_id="evt_async").exists()
