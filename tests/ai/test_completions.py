import json
from decimal import Decimal

import httpx2
import openai
import pytest
from asgiref.sync import async_to_sync

from ai.models import AiRequest, AiSpend
from integrations import limiter
from integrations.models import IdempotencyRecord, ProviderCall
from tests.ai.fakes import BASE_URLS, KEYS, anthropic_message, error, openai_chat

pytestmark = pytest.mark.django_db


def test_openai_answers_in_the_one_response_shape(fake_ai, complete, user):
    fake_ai.add("openai", openai_chat("Hello there!", usage=(1000, 200, 400)))
    resp = complete(max_tokens=50, temperature=0.5)
    assert resp.status_code == 200, resp.json()
    body = resp.json()
    assert body == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "content": "Hello there!",
        "tool_calls": [],
        "finish_reason": "stop",
        "usage": {"input_tokens": 1000, "output_tokens": 200, "cached_tokens": 400, "cache_write_tokens": 0},
        # (600 x 0.15 + 400 x 0.075 + 200 x 0.60) / 1M
        "cost_usd": "0.000240",
        "cached": False,
        "fallbacks": [],
    }
    sent = fake_ai.to("openai")[0]
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["max_completion_tokens"] == 50 and sent.json["temperature"] == 0.5
    assert sent.headers["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"
    call = ProviderCall.objects.get()
    assert (call.provider, call.operation, call.outcome, call.owner) == ("openai", "completion", "ok", user)
    assert call.provider_request_id == "req_openai_1"
    assert call.units == {"input_tokens": 1000, "output_tokens": 200, "cached_tokens": 400, "cache_write_tokens": 0}
    assert call.cost_usd == Decimal("0.000240")
    logged = AiRequest.objects.get()
    assert (logged.provider, logged.outcome, logged.output_tokens, logged.prompt) == ("openai", "ok", 200, None)


def test_openai_is_sent_what_its_sdks_typed_create_sends(fake_ai, complete):
    """The answer is asked for with the client's `post` (ai.providers.openai_chat._openai_complete), skipping
    `chat.completions.create`'s type-driven transform of the body: the same JSON and headers reach the provider."""
    fake_ai.add("openai", openai_chat(tool_calls=[{"id": "call_2", "name": "lookup", "arguments": {"q": "b"}}]))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_1", "name": "lookup", "arguments": {"q": "a"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    tools = [{"name": "lookup", "description": "Look up.", "parameters": {"type": "object", "properties": {}}}]
    resp = complete(
        messages=messages,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        max_tokens=64,
        temperature=0.3,
    )
    assert resp.status_code == 200, resp.json()
    (hub,) = fake_ai.to("openai")

    sdk_sent = []

    def handler(request):
        sdk_sent.append(request)
        return openai_chat()

    async def typed_create():
        client = openai.AsyncOpenAI(
            api_key=KEYS["OPENAI_API_KEY"],
            base_url=BASE_URLS["OPENAI_BASE_URL"],
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
        )
        await client.chat.completions.create(**hub.json, timeout=30)

    async_to_sync(typed_create)()
    (sdk,) = sdk_sent
    assert hub.json == json.loads(sdk.content)
    assert hub.json["tools"][0]["function"]["name"] == "lookup" and hub.json["tool_choice"]["function"]
    assert (hub.request.method, str(hub.request.url)) == (sdk.method, str(sdk.url))
    volatile = {"x-stainless-read-timeout", "content-length"}
    assert {k: v for k, v in hub.headers.items() if k not in volatile} == {
        k: v for k, v in sdk.headers.items() if k not in volatile
    }


def test_anthropic_answers_in_the_same_shape(fake_ai, complete):
    fake_ai.add("anthropic", anthropic_message("Bonjour", usage=(100, 20, 50)))
    resp = complete(
        task="writing", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    body = resp.json()
    assert resp.status_code == 200, body
    assert (body["provider"], body["model"], body["content"], body["finish_reason"]) == (
        "anthropic",
        "claude-haiku-4-5-20251001",
        "Bonjour",
        "stop",
    )
    # Anthropic counts cache reads apart from input; the hub's input is the total.
    assert body["usage"] == {"input_tokens": 150, "output_tokens": 20, "cached_tokens": 50, "cache_write_tokens": 0}
    # priced as the route's model claude-sonnet-4-6: (100 x 3 + 50 x 0.30 + 20 x 15) / 1M
    assert body["cost_usd"] == "0.000615"
    sent = fake_ai.to("anthropic")[0].json
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert sent["max_tokens"] == 1024  # Anthropic requires one: AI_DEFAULT_MAX_TOKENS


def test_a_429_with_retry_after_falls_through_to_the_next_provider_and_pauses_the_first(fake_ai, complete):
    fake_ai.add("openai", error(429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after": "30"}))
    fake_ai.add("anthropic", anthropic_message("from anthropic"), anthropic_message("again"))
    body = complete().json()
    assert body["provider"] == "anthropic"
    assert body["fallbacks"] == [
        {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "error": "provider_rate_limited",
            "detail": "openai is rate limiting the hub; retry after the time given.",
            "http_status": 429,
            "provider_code": "rate_limit_exceeded",
            "retry_after": 30.0,
        }
    ]
    assert limiter.blocked_for("openai") > 29
    # The next request does not call openai before its Retry-After has passed.
    second = complete().json()
    assert second["provider"] == "anthropic"
    assert second["fallbacks"][0]["error"] == "rate_limited_outbound"
    assert len(fake_ai.to("openai")) == 1
    assert list(ProviderCall.objects.order_by("id").values_list("provider", "outcome")) == [
        ("openai", "rate_limited"),
        ("anthropic", "ok"),
        ("anthropic", "ok"),
    ]


def test_a_500_falls_through_to_the_next_provider(fake_ai, complete):
    fake_ai.add("openai", error(500, "The server had an error"))
    fake_ai.add("anthropic", anthropic_message("ok"))
    body = complete().json()
    assert body["provider"] == "anthropic"
    assert [(f["provider"], f["error"], f["http_status"]) for f in body["fallbacks"]] == [
        ("openai", "provider_unavailable", 500)
    ]
    # The SDK's own retries are off: one request to openai, one ProviderCall each.
    assert len(fake_ai.to("openai")) == 1
    assert ProviderCall.objects.count() == 2


def test_a_timeout_falls_through_to_the_next_provider(fake_ai, complete):
    def hang(request):
        raise httpx2.ReadTimeout("read timed out", request=request)

    fake_ai.add("openai", hang)
    fake_ai.add("anthropic", anthropic_message("ok"))
    body = complete().json()
    assert body["provider"] == "anthropic"
    assert body["fallbacks"][0]["error"] == "provider_timeout"
    assert ProviderCall.objects.filter(provider="openai").get().outcome == "timeout"


def test_a_short_retry_after_is_waited_out_once_within_the_deadline(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"]]}
    fake_ai.add("openai", error(429, "slow down", headers={"retry-after": "0.2"}), openai_chat("finally"))
    body = complete().json()
    assert body["content"] == "finally"
    assert [f["retry_after"] for f in body["fallbacks"]] == [0.2]
    assert len(fake_ai.to("openai")) == 2


def test_a_retry_after_beyond_the_wait_limit_answers_503_with_retry_after(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"]]}
    fake_ai.add("openai", error(429, "slow down", headers={"retry-after": "20"}))
    resp = complete()
    assert resp.status_code == 503
    assert resp["Retry-After"] == "20"
    assert resp.json()["error"] == "ai_unavailable"
    assert len(fake_ai.to("openai")) == 1


def test_a_permanent_400_is_not_retried_anywhere(fake_ai, complete):
    fake_ai.add(
        "openai",
        error(
            400,
            "Invalid parameter: messages with role 'tool' must be a response to a preceding message with 'tool_calls'.",
            code="invalid_parameter",
            type_="invalid_request_error",
        ),
    )
    resp = complete()
    assert resp.status_code == 502
    body = resp.json()
    assert (body["error"], body["provider"], body["provider_code"]) == (
        "provider_rejected",
        "openai",
        "invalid_parameter",
    )
    assert [t["provider"] for t in body["tried"]] == ["openai"]
    assert fake_ai.to("anthropic") == [] and fake_ai.to("gemini") == []
    assert AiRequest.objects.get().outcome == "failed"


def test_a_refusal_is_an_answer_and_is_not_retried_elsewhere(fake_ai, complete):
    fake_ai.add("openai", openai_chat(None, refusal="I can't help with that."))
    body = complete().json()
    assert (body["provider"], body["finish_reason"], body["content"]) == (
        "openai",
        "refusal",
        "I can't help with that.",
    )
    assert fake_ai.to("anthropic") == []


def test_insufficient_quota_falls_through_and_is_never_retried_on_the_same_provider(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"], ["anthropic", "claude-haiku-4-5"]]}
    fake_ai.add(
        "openai",
        error(429, "You exceeded your current quota", code="insufficient_quota", headers={"retry-after": "0.1"}),
    )
    fake_ai.add(
        "anthropic",
        error(429, "busy", anthropic=True, type_="rate_limit_error", headers={"retry-after": "0.1"}),
        anthropic_message("ok"),
    )
    body = complete().json()
    assert body["provider"] == "anthropic"
    assert [(f["provider"], f["error"]) for f in body["fallbacks"]] == [
        ("openai", "provider_quota_exceeded"),
        ("anthropic", "provider_rate_limited"),
    ]
    assert len(fake_ai.to("openai")) == 1  # the second pass retried anthropic only


def test_unconfigured_providers_are_skipped_without_a_request(fake_ai, complete, settings):
    settings.OPENAI_API_KEY = ""
    fake_ai.add("anthropic", anthropic_message("ok"))
    body = complete().json()
    assert (body["provider"], body["fallbacks"]) == ("anthropic", [])
    assert fake_ai.to("openai") == []
    assert not ProviderCall.objects.filter(provider="openai").exists()


def test_all_providers_down_answers_json_503_listing_what_was_tried(fake_ai, complete, settings):
    settings.GEMINI_API_KEY = ""
    fake_ai.add("openai", error(503, "down", headers={"retry-after": "40"}))
    fake_ai.add("anthropic", error(529, "Overloaded", anthropic=True, type_="overloaded_error"))
    resp = complete()
    assert resp.status_code == 503
    body = resp.json()
    assert body["error"] == "ai_unavailable"
    assert "openai (provider_unavailable); anthropic (provider_unavailable)" in body["detail"]
    assert [(t["provider"], t["http_status"]) for t in body["tried"]] == [("openai", 503), ("anthropic", 529)]
    assert body["skipped"] == [
        {
            "provider": "gemini",
            "model": "gemini-2.5-flash-lite",
            "error": "provider_not_configured",
            "missing": ["GEMINI_API_KEY"],
        }
    ]
    assert resp["Retry-After"] == "40"
    assert AiRequest.objects.get().error_code == "ai_unavailable"


def test_no_configured_provider_answers_503_naming_what_to_set(fake_ai, complete, settings):
    for name in KEYS:
        setattr(settings, name, "")
    resp = complete()
    assert resp.status_code == 503
    body = resp.json()
    assert body["error"] == "ai_not_configured" and body["tried"] == []
    assert [s["missing"] for s in body["skipped"]] == [["OPENAI_API_KEY"], ["ANTHROPIC_API_KEY"], ["GEMINI_API_KEY"]]
    assert fake_ai.sent == []


def test_an_open_circuit_is_passed_over_without_calling_the_provider(fake_ai, complete, settings):
    settings.CIRCUIT_BREAKER_OVERRIDES = {"openai": {"failure_threshold": 1}}
    fake_ai.add("openai", error(500))
    fake_ai.add("anthropic", anthropic_message("one"), anthropic_message("two"))
    complete()
    body = complete().json()
    assert body["provider"] == "anthropic"
    assert body["fallbacks"][0]["error"] == "circuit_open"
    assert len(fake_ai.to("openai")) == 1


def test_a_named_model_routes_to_the_providers_that_serve_it(fake_ai, complete):
    fake_ai.add("openai", openai_chat("big", model="gpt-4.1-2025-04-14"))
    body = complete(model="gpt-4.1").json()
    assert (body["provider"], body["model"]) == ("openai", "gpt-4.1-2025-04-14")
    assert fake_ai.to("openai")[0].json["model"] == "gpt-4.1"


def test_openai_compatible_providers_use_their_own_base_url_and_key(fake_ai, complete):
    fake_ai.add("gemini", openai_chat("from gemini", model="gemini-2.5-flash-lite"))
    body = complete(model="gemini-2.5-flash-lite", provider="gemini", max_tokens=10).json()
    assert body["provider"] == "gemini"
    sent = fake_ai.to("gemini")[0]
    assert str(sent.request.url) == "https://gemini.test/v1beta/openai/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEYS['GEMINI_API_KEY']}"
    assert sent.json["max_tokens"] == 10


@pytest.mark.parametrize(
    "body,error",
    [
        ({"messages": []}, "invalid"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "invalid"),
        ({"task": "poetry"}, "unknown_task"),
        ({"model": "no-such-model"}, "unknown_model"),
        ({"temperature": 3}, "invalid"),
    ],
)
def test_bad_requests_are_refused_before_any_provider_is_called(fake_ai, complete, body, error):
    resp = complete(**body)
    assert resp.status_code == 400
    assert resp.json()["error"] == error
    assert fake_ai.sent == []


def test_completions_need_authentication(api_client, db):
    assert api_client.post("/api/v1/ai/completions/", {}, format="json").status_code == 401


def test_a_repeat_with_the_same_idempotency_key_replays_the_answer_without_a_second_call(fake_ai, user_client):
    fake_ai.add("openai", openai_chat("once"))
    body = {"messages": [{"role": "user", "content": "Say hello"}]}
    first = user_client.post("/api/v1/ai/completions/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = user_client.post("/api/v1/ai/completions/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 200 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert len(fake_ai.to("openai")) == 1
    assert ProviderCall.objects.get().idempotency_key == "k-1"
    other = user_client.post(
        "/api/v1/ai/completions/", {**body, "max_tokens": 5}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert other.status_code == 422


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_another_method_is_405_and_holds_no_budget_or_key(fake_ai, user_client, method):
    body = {"messages": [{"role": "user", "content": "Say hello"}]}
    resp = getattr(user_client, method)("/api/v1/ai/completions/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-9")
    assert resp.status_code == 405 and resp.json()["error"] == "method_not_allowed"
    assert not AiSpend.objects.filter(reserved_usd__gt=0).exists()
    assert not IdempotencyRecord.objects.exists()
    assert fake_ai.sent == []
