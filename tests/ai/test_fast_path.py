"""An API client's completion runs through AI_MIDDLEWARE only (ai.fastpath) and answers as the full chain does."""

import json
import logging

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from prometheus_client import REGISTRY

from integrations import aio
from tests.ai.conftest import URL, AsgiCall, auth_headers
from tests.ai.fakes import openai_chat

# The ASGI handler sends request_started/finished, which close a connection inside a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def full_chain_runs(monkeypatch):
    """How many requests went down the full middleware chain (its session middleware saw them)."""
    seen = []
    real = SessionMiddleware.process_request

    def process_request(self, request):
        seen.append(request.path)
        return real(self, request)

    monkeypatch.setattr(SessionMiddleware, "process_request", process_request)
    return seen


def _through_asgi(server_loop, body, headers):
    async def run():
        server_loop()
        call = AsgiCall("POST", URL, body=body, headers=headers).start()
        await call.task
        await aio.settle()  # the booking, written after the answer
        return call

    return async_to_sync(run)()


def _request(user_client, body=None, auth=None):
    body = json.dumps(body if body is not None else {"messages": [{"role": "user", "content": "Say hello"}]})
    auth = auth or auth_headers(user_client)["Authorization"]
    headers = [("content-type", "application/json"), ("authorization", auth), ("accept", "*/*")]
    return body.encode(), headers


def _answers_both_ways(settings, server_loop, full_chain_runs, body, headers):
    answers = []
    for fast in (True, False):
        settings.AI_FAST_PATH = fast
        before = len(full_chain_runs)
        answers.append(_through_asgi(server_loop, body, headers))
        assert len(full_chain_runs) - before == (0 if fast else 1), "fast" if fast else "full"
    return answers


def _comparable(call):
    headers = dict(call.headers)
    assert len(headers.pop("x-request-id")) >= 32  # made per request
    return call.status, headers, call.json()


@pytest.mark.postgres  # the production server's configuration: the connection pool's hops
def test_a_completion_through_the_fast_path_answers_as_the_full_chain_does(
    fake_ai, user_client, server_loop, settings, full_chain_runs
):
    fake_ai.add("openai", openai_chat("hello"), openai_chat("hello"))
    body, headers = _request(user_client)
    fast, full = _answers_both_ways(settings, server_loop, full_chain_runs, body, headers)
    assert fast.status == 200 and fast.json()["content"] == "hello"
    assert _comparable(fast) == _comparable(full)
    # The security headers the middleware sets on API answers are among them.
    assert fast.headers["x-content-type-options"] == "nosniff" and fast.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" in fast.headers


@pytest.mark.parametrize(
    "body, auth, status",
    [
        ({"messages": []}, None, 400),  # validation: the hub's JSON error shape
        (None, "Token not-a-real-token", 401),  # DRF's token authentication, WWW-Authenticate included
    ],
)
def test_its_errors_are_the_full_chains(
    fake_ai, user_client, server_loop, settings, full_chain_runs, body, auth, status
):
    body, headers = _request(user_client, body, auth)
    fast, full = _answers_both_ways(settings, server_loop, full_chain_runs, body, headers)
    assert fast.status == status and set(fast.json()) >= {"error", "detail"}
    assert _comparable(fast) == _comparable(full)


def test_it_logs_and_counts_the_request_as_the_full_chain_does(
    fake_ai, user_client, server_loop, settings, full_chain_runs, caplog
):
    fake_ai.add("openai", openai_chat("hello"))
    labels = {"status": "200", "view": "ai:completions", "method": "POST"}
    counted = "django_http_responses_total_by_status_view_method_total"
    before = REGISTRY.get_sample_value(counted, labels) or 0
    settings.ACCESS_LOG = True
    body, headers = _request(user_client)
    with caplog.at_level(logging.INFO, logger="hub.access"):
        call = _through_asgi(server_loop, body, headers)
    assert call.status == 200 and full_chain_runs == []
    assert REGISTRY.get_sample_value(counted, labels) == before + 1
    lines = [r for r in caplog.records if r.name == "hub.access"]
    assert [r.getMessage() for r in lines] == [f"POST {URL} 200"]


def test_a_request_without_an_api_token_goes_the_full_way(fake_ai, user_client, server_loop, full_chain_runs):
    body, headers = _request(user_client, auth="Bearer something")
    call = _through_asgi(server_loop, body, headers)
    assert call.status == 401 and call.json()["error"] == "not_authenticated"
    assert full_chain_runs == [URL]


def test_the_tests_own_client_takes_the_fast_path_too(fake_ai, complete, full_chain_runs):
    """Django's test clients run MIDDLEWARE, whose first entry hands the request to the same short chain."""
    fake_ai.add("openai", openai_chat("hello"))
    resp = complete()
    assert resp.status_code == 200 and resp.json()["content"] == "hello"
    assert full_chain_runs == []


def test_the_fast_path_runs_a_subset_of_the_middleware_in_the_same_order():
    assert "ai.fastpath.AiFastPathMiddleware" in settings.MIDDLEWARE
    positions = [settings.MIDDLEWARE.index(path) for path in settings.AI_MIDDLEWARE]
    assert positions == sorted(positions)
