"""The ASGI middleware chain stays async and crosses to Django's shared thread only for real work.

One sync-only middleware made Django run the whole chain, and so every async AI
request, inside its one thread-sensitive worker thread; each MiddlewareMixin
method also crossed on its own (about twenty crossings a request, queued behind
every other request's). config.asgi_handler runs the no-I/O ones on the loop.
"""

import asyncio
import json
import re
import threading

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils.module_loading import import_string

from ai import services as ai_services
from integrations import aio
from tests.ai.conftest import AsgiCall
from tests.ai.fakes import openai_chat

# The ASGI handler sends request_started/finished, which close a connection
# inside a test transaction: these tests run outside one.
pytestmark = pytest.mark.django_db(transaction=True)


def test_every_middleware_is_async_capable_so_the_chain_stays_async():
    sync_only = [path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)]
    assert sync_only == []


@pytest.mark.postgres  # the hop count is the web server's (a connection pool); SQLite keeps Django's own hops
def test_a_completion_crosses_to_a_thread_only_for_its_database_work(fake_ai, asgi_completion, crossings):
    fake_ai.add("openai", openai_chat("warm"), openai_chat("hello"))

    async def two():
        await asgi_completion({}).task  # the first request builds the middleware chain
        crossings.clear()
        call = asgi_completion({})
        await call.task
        return call

    call = async_to_sync(two)()
    assert call.status == 200 and json.loads(call.raw)["content"] == "hello"
    middleware = {name: n for name, n in crossings.items() if "Middleware" in name}
    assert middleware == {}, middleware
    # One hop before the provider call (DRF's checks, validation and the budget hold), one for the booking;
    # Django's own: the request_started signal and the response's close.
    assert crossings["_hop"] == 2 and sum(crossings.values()) <= 4, crossings


@pytest.mark.postgres  # the web server's configuration: the connection pool
def test_under_the_web_server_a_completion_hops_only_for_its_request_work_and_its_booking(
    fake_ai, asgi_completion, crossings, server_loop, settings
):
    """Django's request signals run on the loop, not in two more hops: the loop's thread holds no connection."""
    from django.core.signals import request_finished, request_started

    settings.SYNC_VIEW_THREADS = 2  # as config/gunicorn.conf.py's pool sets it
    fake_ai.add("openai", openai_chat("warm"), openai_chat("hello"))
    signals = []

    def seen(sender, **kwargs):
        signals.append(sender)

    request_started.connect(seen, dispatch_uid="test-hops-started")
    request_finished.connect(seen, dispatch_uid="test-hops-finished")

    async def two():
        server_loop()
        await asgi_completion({}).task  # the first request builds the middleware chain
        await aio.settle()
        crossings.clear()
        signals.clear()
        call = asgi_completion({})
        await call.task
        await aio.settle()  # the booking, written after the answer
        return call

    try:
        call = async_to_sync(two)()
    finally:
        request_started.disconnect(dispatch_uid="test-hops-started")
        request_finished.disconnect(dispatch_uid="test-hops-finished")
    assert call.status == 200 and json.loads(call.raw)["content"] == "hello"
    assert "x-request-id" in call.headers and call.headers["x-content-type-options"] == "nosniff"
    # One hop before the provider call (DRF's checks, validation and the budget hold); the booking goes to the
    # worker's batch writer (gateway.bookings), not a hop of its own.
    assert dict(crossings) == {"_hop_on_own_thread": 1}, crossings
    assert len(signals) == 2, signals  # request_started and request_finished, once each


def test_a_request_that_used_the_thread_sensitive_thread_is_finished_there(
    fake_ai, asgi_completion, crossings, server_loop, settings, monkeypatch
):
    """What ran there (a session saved, Django's async ORM) may hold a pooled connection: request_finished on
    that thread gives it back, as Django's handler does."""
    from asgiref.sync import sync_to_async

    from ai.views import CompletionView

    settings.SYNC_VIEW_THREADS = 2
    fake_ai.add("openai", openai_chat("hello"))
    real_post = CompletionView.post

    async def post(self, request):
        await sync_to_async(lambda: None, thread_sensitive=True)()
        return await real_post(self, request)

    monkeypatch.setattr(CompletionView, "post", post)

    async def one():
        server_loop()
        call = asgi_completion({})
        await call.task
        await aio.settle()
        return call

    call = async_to_sync(one)()
    assert call.status == 200 and json.loads(call.raw)["content"] == "hello"
    assert crossings["HttpResponseBase.close"] == 1, crossings


@pytest.mark.redis
def test_a_completion_asks_the_shared_limiter_once_for_its_tokens_its_request_and_the_breaker(
    fake_ai, complete, settings, monkeypatch
):
    """The tokens-per-minute bucket, the request bucket and the circuit breaker's state: one Redis round trip
    (sent beside the budget hold on the blocking client, Booking.reserve; no second one from the attempt)."""
    import redis.asyncio
    import redis.connection

    settings.RATE_LIMITS = {
        **settings.RATE_LIMITS,
        "openai": {"requests": {"rate": 100, "burst": 100}, "tokens": {"rate": 1000, "burst": 100_000}},
    }
    fake_ai.add("openai", openai_chat("hello"))
    commands = []  # (command, the keys it names) of the gateway's limiter and breakers, on either client
    real = redis.asyncio.Redis.execute_command
    real_send = redis.connection.AbstractConnection.send_command

    def record(args):
        if any(":rl:openai:" in str(a) or ":cb:openai" in str(a) for a in args):
            commands.append(args[0])

    async def counting(self, *args, **options):
        record(args)
        return await real(self, *args, **options)

    def sending(self, *args, **options):
        record(args)
        return real_send(self, *args, **options)

    monkeypatch.setattr(redis.asyncio.Redis, "execute_command", counting)
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_command", sending)
    resp = complete()
    assert resp.status_code == 200 and resp.json()["content"] == "hello"
    assert commands == ["EVALSHA"], commands


class Call(AsgiCall):
    """AsgiCall keeping every Set-Cookie header (its `headers` dict keeps one per name)."""

    async def _send(self, message):
        if message["type"] == "http.response.start":
            self.cookies = dict(
                re.match(rb"(\w+)=([^;]*)", value).groups()
                for name, value in message["headers"]
                if name.lower() == b"set-cookie"
            )
        await super()._send(message)


def _cookies(call):
    return {k.decode(): v.decode() for k, v in call.cookies.items()}


def test_an_admin_login_over_asgi_saves_its_session_and_checks_csrf(staff_user):
    staff_user.set_password("s3cret-pass-for-test")
    staff_user.save()

    async def login(token_in_form):
        page = Call("GET", "/admin/login/").start()
        await page.task
        csrf_cookie = _cookies(page)["csrftoken"]
        form_token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.raw).group(1).decode()
        body = (
            f"csrfmiddlewaretoken={form_token if token_in_form else 'x' * 64}"
            f"&username={staff_user.username}&password=s3cret-pass-for-test&next=/admin/"
        ).encode()
        post = Call(
            "POST",
            "/admin/login/",
            body=body,
            headers=[("content-type", "application/x-www-form-urlencoded"), ("cookie", f"csrftoken={csrf_cookie}")],
        ).start()
        await post.task
        return post

    refused = async_to_sync(login)(False)
    assert refused.status == 403
    logged_in = async_to_sync(login)(True)
    assert logged_in.status == 302 and logged_in.headers["location"] == "/admin/"
    session = _cookies(logged_in)["sessionid"]

    async def index():
        call = Call("GET", "/admin/", headers=[("cookie", f"sessionid={session}")]).start()
        await call.task
        return call

    page = async_to_sync(index)()
    assert page.status == 200 and b"login-form" not in page.raw and b"/admin/logout/" in page.raw


def test_with_hop_threads_one_stuck_database_hop_does_not_hold_up_another_request(
    fake_ai, asgi_completion, settings, monkeypatch
):
    """On Django's one shared thread, every request's database work queues behind a slow one."""
    settings.DB_HOP_THREADS = 4
    fake_ai.add("openai", openai_chat("one"), openai_chat("two"))
    entered, release = threading.Event(), threading.Event()
    real_reserve = ai_services.Booking.reserve

    def reserve(self, chain):  # before any row lock: the two requests share a budget row and a roll-up row
        if not entered.is_set():
            entered.set()
            assert release.wait(30), "the second request never finished"
        return real_reserve(self, chain)

    monkeypatch.setattr(ai_services.Booking, "reserve", reserve)

    async def both():
        first = asgi_completion({})
        await asyncio.to_thread(entered.wait, 30)  # the first request is stuck inside its first database hop
        second = asgi_completion({})
        await second.task
        release.set()
        await first.task
        return first, second

    first, second = async_to_sync(both)()
    assert (first.status, second.status) == (200, 200)
    assert {first.json()["content"], second.json()["content"]} == {"one", "two"}
