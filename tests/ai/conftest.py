import asyncio
import json

import httpx2
import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient

from ai import leases, providers
from integrations import aio
from integrations.gateway import bookings
from tests.ai.fakes import BASE_URLS, KEYS, FakeAI

URL = "/api/v1/ai/completions/"


@pytest.fixture
def fake_ai(settings):
    """Every AI provider configured and answered by FakeAI; a short route for `simple`."""
    for name, value in {**BASE_URLS, **KEYS}.items():
        setattr(settings, name, value)
    settings.AI_ROUTES = {
        "simple": [["openai", "gpt-4o-mini"], ["anthropic", "claude-haiku-4-5"], ["gemini", "gemini-2.5-flash-lite"]],
        "writing": [["anthropic", "claude-sonnet-4-6"], ["openai", "gpt-4.1"]],
    }
    settings.AI_DEFAULT_TASK = "simple"
    settings.AI_DEADLINE_SECONDS = 10.0
    settings.AI_RETRY_WAIT_MAX_SECONDS = 1.0
    fake = FakeAI()
    providers.reset_clients()
    providers.http_client_factory = lambda: httpx2.AsyncClient(transport=httpx2.MockTransport(fake.handler))
    yield fake
    providers.http_client_factory = None
    providers.reset_clients()
    assert not fake.unexpected, f"requests nobody expected: {fake.unexpected}"


def auth_headers(api_client):
    """The Authorization header an APIClient from `client_for` sends, for Django's AsyncClient."""
    return {"Authorization": api_client._credentials["HTTP_AUTHORIZATION"]}


async def apost(client, body, headers=None):
    """POST a completion through Django's async handler; a streamed body is read to its end (`resp.raw`)."""
    resp = await AsyncClient().post(URL, body, content_type="application/json", headers=headers)
    if resp.streaming:
        resp.raw = b"".join([chunk async for chunk in resp.streaming_content])
    return resp


@pytest.fixture
def complete(user_client):
    """POST a completion as `user` (or `client`) through the async view, on one event loop per call."""

    def post(client=None, *, headers=None, **body):
        body.setdefault("messages", [{"role": "user", "content": "Say hello"}])
        return async_to_sync(apost)(client, body, {**auth_headers(client or user_client), **(headers or {})})

    return post


class AsgiCall:
    """One request through config.asgi.application as an ASGI server would make it, disconnect included."""

    def __init__(self, method, path, *, body=b"", headers=()):
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                (b"content-length", str(len(body)).encode()),
                *[(k.lower().encode(), v.encode()) for k, v in headers],
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("testserver", 80),
        }
        self.body = body
        self.status = None
        self.headers = {}
        self.chunks = []
        self.got_body = asyncio.Event()
        self.finished = asyncio.Event()
        self._disconnect = asyncio.Event()
        self._body_sent = False

    async def _receive(self):
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message):
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            if message.get("body"):
                self.chunks.append(message["body"])
                self.got_body.set()
            if not message.get("more_body"):
                self.finished.set()

    def start(self):
        from config.asgi import application

        self.task = asyncio.create_task(application(self.scope, self._receive, self._send))
        return self

    def disconnect(self):
        self._disconnect.set()

    @property
    def raw(self):
        return b"".join(self.chunks)

    def json(self):
        return json.loads(self.raw)


@pytest.fixture
def asgi_completion(user_client):
    """Start a completion POST on the ASGI application (call inside a running loop)."""

    def start(body, client=None, headers=()):
        body.setdefault("messages", [{"role": "user", "content": "Say hello"}])
        auth = auth_headers(client or user_client)["Authorization"]
        headers = [("content-type", "application/json"), ("authorization", auth), *headers]
        return AsgiCall("POST", URL, body=json.dumps(body).encode(), headers=headers).start()

    return start


@pytest.fixture
def server_loop(settings):
    """`mark()` in a running loop does what config.asgi's lifespan startup does: the loop is the server's
    (bookings may follow answers), its hops on threads of their own as under the production server."""

    def mark():
        settings.DB_HOP_THREADS = 2
        settings.SYNC_VIEW_THREADS = 2  # config.asgi_handler's server path (handle_async_view for the AI views)
        aio.serve_on(asyncio.get_running_loop())
        if connection.vendor == "postgresql":  # the pool's: answered calls' bookings go to the batch writer
            bookings.start()
            leases.start()  # and budget holds come from the worker's slices of users' budgets

    yield mark
    aio.serve_on(None)
    bookings.stop()
    leases.stop()
