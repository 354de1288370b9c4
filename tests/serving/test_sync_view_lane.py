"""Under the ASGI server with the connection pool on, a sync view's request runs whole in one hop off the loop.

config.asgi_handler: Django's synchronous middleware chain and the view together on the sync views' own
threads (integrations.aio.view_hop), as under WSGI, instead of Django's ASGI path (a new thread per request
and a hop per signal). Async views and paths that do not resolve keep Django's path.
"""

import asyncio
import json
import threading

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_finished

from integrations.auth.tokens import token_create
from integrations.context import after_response
from tests.ai.conftest import AsgiCall
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the lane's threads hold connections of their own


@pytest.fixture
def pool_threads(settings):
    settings.SYNC_VIEW_THREADS = 2  # as the production server sets it with the pool on
    return settings


def call(method, path, *, body=b"", headers=()):
    async def run():
        asgi = AsgiCall(method, path, body=body, headers=[("content-type", "application/json"), *headers]).start()
        await asgi.task
        return asgi

    return async_to_sync(run)()


def token_header(user=None):
    _, key = token_create(user=user or UserFactory(), name="lane")
    return [("authorization", f"Token {key}")]


@pytest.fixture
def finished():
    seen = []

    def on_finished(sender, **kwargs):
        seen.append(sender)

    request_finished.connect(on_finished, dispatch_uid="test-lane-finished")
    yield seen
    request_finished.disconnect(dispatch_uid="test-lane-finished")


def test_a_health_check_is_one_hop_with_the_full_chain(pool_threads, crossings, finished):
    call("GET", "/healthz")  # the first request builds the middleware chain
    crossings.clear()
    finished.clear()
    resp = call("GET", "/healthz", headers=[("x-request-id", "req-lane-1")])
    assert resp.status == 200 and resp.json() == {"status": "ok"}
    # The full chain ran: security, clickjacking, request id.
    assert resp.headers["x-frame-options"] == "DENY" and resp.headers["x-request-id"] == "req-lane-1"
    assert resp.headers["x-content-type-options"] == "nosniff"
    # One hop for request_started, the chain, the view and request_finished.
    assert crossings == {"_hop_on_own_thread": 1}, crossings
    assert len(finished) == 1


def test_an_authenticated_api_call_reads_and_answers_like_wsgi(pool_threads, crossings):
    user = UserFactory()
    headers = token_header(user)
    call("GET", "/api/v1/ai/usage/", headers=headers)
    crossings.clear()
    resp = call("GET", "/api/v1/ai/usage/", headers=headers)
    assert resp.status == 200, resp.raw
    body = resp.json()  # the caller's own usage: nothing spent yet
    assert (body["requests"], body["by_model"], body["spent_usd"]) == (0, [], "0.000000")
    assert crossings == {"_hop_on_own_thread": 1}, crossings


def test_without_a_token_the_api_answers_its_json_401(pool_threads):
    resp = call("GET", "/api/v1/ai/usage/")
    assert resp.status == 401 and resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]


def test_a_post_body_reaches_the_view_and_bad_input_is_a_json_400(pool_threads):
    body = json.dumps({"slices": [{"origin": "ZZZ", "destination": "JFK", "departure_date": "2001-01-01"}]})
    resp = call("POST", "/api/v1/travel/searches/", body=body.encode(), headers=token_header())
    assert resp.status == 400, resp.raw
    assert "slices" in json.dumps(resp.json())  # the field is named


def test_a_body_in_several_messages_is_read_whole(pool_threads):
    from tests.integrations.test_webhook_fastpath import Delivery

    filler = "x" * 70_000  # over one ASGI message, as a server splits a large body
    body = json.dumps(
        {"slices": [{"origin": "ZZZ", "destination": "JFK", "departure_date": "2001-01-01"}], "f": filler}
    )

    headers = token_header()

    async def run():
        asgi = Delivery("/api/v1/travel/searches/", body.encode(), parts=4, headers=headers).start()
        await asgi.task
        return asgi

    resp = async_to_sync(run)()
    assert resp.status == 400, resp.raw
    assert "slices" in json.dumps(resp.json())  # the whole JSON body was parsed: the view named the field


def test_after_response_work_runs_once_the_answer_is_sent(pool_threads, crossings, monkeypatch):
    from integrations.views import health

    seen = []
    answer = health.JsonResponse

    def json_response(data):
        after_response(lambda: seen.append(("after", asgi.status)))
        return answer(data)

    call("GET", "/healthz")
    crossings.clear()
    monkeypatch.setattr(health, "JsonResponse", json_response)
    asgi = AsgiCall("GET", "/healthz")

    async def run():
        await asgi.start().task

    async_to_sync(run)()
    assert asgi.status == 200 and seen == [("after", 200)]
    assert crossings == {"_hop_on_own_thread": 2}, crossings  # the close waits for the answer: a hop of its own


def test_a_path_that_does_not_resolve_takes_djangos_path(pool_threads, crossings):
    resp = call("GET", "/admin")  # no slash: CommonMiddleware's redirect
    assert resp.status == 301 and resp.headers["location"] == "/admin/"
    assert "_hop_on_own_thread" not in crossings


def test_djangos_path_keeps_one_thread_for_its_thread_sensitive_calls(pool_threads):
    # Django opens a new thread per request for them (and another to join it): starting each blocked the
    # loop until the new thread ran. With the pool on, every request's go to one thread of the worker's.
    seen = []

    def on_finished(sender, **kwargs):
        seen.append(threading.current_thread())

    request_finished.connect(on_finished, dispatch_uid="test-lane-sensitive")
    try:
        for _ in range(3):
            assert call("GET", "/admin").status == 301  # a redirect: Django's path
    finally:
        request_finished.disconnect(dispatch_uid="test-lane-sensitive")
    assert len(seen) == 3 and len(set(seen)) == 1, seen
    assert seen[0].name.startswith("asgi-sensitive") and seen[0].is_alive()


def test_without_the_pool_django_serves_it(settings, crossings):
    settings.SYNC_VIEW_THREADS = 0
    call("GET", "/healthz")
    crossings.clear()
    resp = call("GET", "/healthz")
    assert resp.status == 200 and resp.headers["x-frame-options"] == "DENY"
    # Django's path: a thread-sensitive hop for the view and for each signal.
    assert "_hop_on_own_thread" not in crossings and sum(crossings.values()) >= 2, crossings


@pytest.fixture
def slow_health(monkeypatch):
    """/healthz waits (like a view waiting on a provider) until the returned event is set, 5 s at most."""
    from integrations.views import health

    release = threading.Event()
    answer = health.JsonResponse

    def json_response(data):
        release.wait(5)
        return answer(data)

    monkeypatch.setattr(health, "JsonResponse", json_response)
    return release


def test_a_slow_view_does_not_hold_up_the_next_request(pool_threads, slow_health):
    release = slow_health
    headers = token_header()

    async def run():
        slow = AsgiCall("GET", "/healthz").start()
        await asyncio.sleep(0.05)
        fast = AsgiCall("GET", "/api/v1/ai/usage/", headers=headers).start()
        await asyncio.wait_for(fast.task, 4)
        still_waiting = not slow.task.done()
        release.set()
        await slow.task
        return slow, fast, still_waiting

    slow, fast, still_waiting = async_to_sync(run)()
    assert fast.status == 200 and still_waiting and slow.status == 200


def test_a_webhook_is_acknowledged_while_every_api_thread_waits(
    pool_threads, slow_health, monkeypatch, settings, crossings
):
    from integrations.models import WebhookEvent
    from integrations.webhooks.registry import VERIFIERS
    from tests.integrations import webhook_provider as hubtest
    from tests.integrations.test_webhook_fastpath import Delivery

    settings.SYNC_VIEW_THREADS = 1  # the one API thread is busy below
    settings.WEBHOOK_THREADS = 1
    settings.HUBTEST_WEBHOOK_SECRET = hubtest.SECRET
    monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, hubtest.verify)
    release = slow_health
    body = hubtest.event_body("evt_lane")

    async def run():
        slow = AsgiCall("GET", "/healthz").start()
        await asyncio.sleep(0.05)
        crossings.clear()
        ack = Delivery("/webhooks/hubtest/", body, headers=[("x-hubtest-signature", hubtest.sign(body))]).start()
        await asyncio.wait_for(ack.task, 4)
        still_waiting = not slow.task.done()
        hops = dict(crossings)
        release.set()
        await slow.task
        return ack, still_waiting, hops

    ack, still_waiting, hops = async_to_sync(run)()
    assert ack.status == 200 and ack.json()["status"] == "received" and still_waiting
    assert "x-frame-options" not in ack.headers  # the webhook's short chain, not the full one
    assert hops == {"_hop_on_own_thread": 1}, hops
    assert WebhookEvent.objects.filter(event_id="evt_lane").exists()
