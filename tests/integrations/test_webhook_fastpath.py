"""The lean ack path: webhook routes run through WEBHOOK_MIDDLEWARE only; every other route is untouched."""

import logging

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_finished
from django.test import AsyncClient, Client

from integrations.context import after_response
from integrations.logging import RequestIdFilter
from integrations.models import WebhookEvent
from integrations.webhooks.registry import VERIFIERS
from tests.ai.conftest import AsgiCall
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


# --- Under the ASGI server: config.asgi serves a resolved webhook route without Django's request machinery ---


class Delivery(AsgiCall):
    """One POST through config.asgi.application; `parts` splits the body over several http.request messages."""

    def __init__(self, path, body, *, parts=1, headers=()):
        super().__init__("POST", path, body=body, headers=[("content-type", "application/json"), *headers])
        size = -(-len(body) // parts) or 1
        self.messages = [body[i : i + size] for i in range(0, len(body), size)] or [b""]

    async def _receive(self):
        if self.messages:
            chunk = self.messages.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.messages)}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}


def asgi_deliver(event_id="evt_asgi", *, path="/webhooks/hubtest/", body=None, signature=None, parts=1, headers=()):
    body = hubtest.event_body(event_id) if body is None else body
    signature = hubtest.sign(body) if signature is None else signature

    async def run():
        call = Delivery(path, body, parts=parts, headers=[("x-hubtest-signature", signature), *headers]).start()
        await call.task
        return call

    return async_to_sync(run)()


@pytest.fixture
def access_lines():
    """The hub.access lines written meanwhile, with their request id."""
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(f"{record.getMessage()} {record.request_id}")

    handler = Keep(level=logging.INFO)
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("hub.access")
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.mark.django_db(transaction=True)  # request_started/finished close a connection inside a test transaction
class TestUnderTheAsgiServer:
    def test_a_delivery_is_stored_and_answered_in_one_hop_off_the_loop(self, crossings, access_lines):
        asgi_deliver("evt_warm")  # the first request builds the middleware chain
        crossings.clear()
        access_lines.clear()
        finished = []

        def on_finished(sender, **kwargs):
            finished.append(sender)

        request_finished.connect(on_finished, dispatch_uid="test-fastpath-finished")
        try:
            call = asgi_deliver("evt_asgi", headers=[("x-request-id", "req-asgi-1")])
        finally:
            request_finished.disconnect(dispatch_uid="test-fastpath-finished")
        assert call.status == 200 and call.json() == {"status": "received", "event_id": "evt_asgi"}
        assert call.headers["x-request-id"] == "req-asgi-1" and "x-frame-options" not in call.headers
        assert WebhookEvent.objects.filter(provider=hubtest.PROVIDER, event_id="evt_asgi").count() == 1
        # One hop for request_started, the chain and request_finished: no thread per request, no middleware hop.
        assert crossings == {"_hop": 1}, crossings
        assert len(finished) == 1
        assert access_lines == ["POST /webhooks/hubtest/ 200 req-asgi-1"]

    def test_after_response_work_runs_once_the_answer_is_sent(self, monkeypatch, crossings):
        asgi_deliver("evt_warm")
        crossings.clear()
        seen = []

        def verify(request):
            after_response(lambda: seen.append(("after", sent.status)))
            return hubtest.verify(request)

        monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, verify)
        body = hubtest.event_body("evt_after")
        sent = Delivery("/webhooks/hubtest/", body, headers=[("x-hubtest-signature", hubtest.sign(body))])

        async def run():
            await sent.start().task

        async_to_sync(run)()
        assert sent.status == 200 and seen == [("after", 200)]
        assert crossings == {"_hop": 2}, crossings  # the close waits for the answer: a hop of its own

    def test_a_duplicate_is_acknowledged_and_stored_once(self):
        body = hubtest.event_body("evt_twice")
        first, second = asgi_deliver(body=body), asgi_deliver(body=body)
        assert first.json()["status"] == "received" and second.json()["status"] == "duplicate"
        assert WebhookEvent.objects.filter(event_id="evt_twice").count() == 1

    def test_a_bad_signature_is_a_json_403_and_nothing_is_stored(self):
        call = asgi_deliver("evt_forged", signature=hubtest.sign(b"another body"))
        assert call.status == 403 and call.json()["error"] == "bad_signature"
        assert call.headers["content-type"] == "application/json" and call.headers["x-request-id"]
        assert not WebhookEvent.objects.filter(event_id="evt_forged").exists()

    def test_a_malformed_body_is_a_json_400_and_nothing_is_stored(self):
        call = asgi_deliver(body=b"{not json")
        assert call.status == 400 and call.json()["error"] == "malformed_body"
        assert not WebhookEvent.objects.exists()

    def test_an_oversized_body_in_several_messages_is_a_json_413(self, settings):
        settings.WEBHOOK_MAX_BYTES = 1000
        body = hubtest.event_body("evt_big", filler="x" * 5000)
        call = asgi_deliver(body=body, parts=4)
        assert call.status == 413 and call.json()["error"] == "payload_too_large"
        assert not WebhookEvent.objects.exists()

    def test_a_body_in_several_messages_is_read_whole(self):
        call = asgi_deliver("evt_parts", parts=3)
        assert call.status == 200 and call.json()["status"] == "received"
        assert WebhookEvent.objects.get(event_id="evt_parts").payload["id"] == "evt_parts"

    def test_a_crash_in_the_view_is_the_json_500_with_its_request_id(self, monkeypatch):
        def broken(request):
            raise RuntimeError("verifier bug")

        monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, broken)
        call = asgi_deliver("evt_crash")
        assert call.status == 500 and call.json()["error"] == "server_error" and call.headers["x-request-id"]

    def test_an_unknown_provider_is_the_inbox_json_404(self):
        call = asgi_deliver(path="/webhooks/nosuch/")
        assert call.status == 404 and call.json()["error"] == "unknown_webhook"

    def test_a_delivery_without_the_final_slash_is_a_json_404_naming_the_slashed_url(self):
        # Not CommonMiddleware's 301: a provider does not follow it, and a redirected POST loses its body.
        call = asgi_deliver(path="/webhooks/hubtest")
        assert call.status == 404 and call.json()["detail"].endswith("ends with a slash: /webhooks/hubtest/")
        assert not WebhookEvent.objects.exists()

    def test_with_the_fast_path_off_a_delivery_takes_the_full_chain(self, settings):
        settings.WEBHOOK_FAST_PATH_PREFIX = ""
        call = asgi_deliver("evt_full")
        assert call.status == 200 and call.headers["x-frame-options"] == "DENY"
        assert WebhookEvent.objects.filter(event_id="evt_full").exists()
