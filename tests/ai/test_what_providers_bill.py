"""An answer is booked at what its provider bills for it: the provider's own figure when it gives one, else the
price table's rates for the kinds of tokens it counted."""

import json
from decimal import Decimal

import pytest

from ai.models import AiBudget, AiRequest, AiSpend, AiUsageMonthly
from integrations.models import ProviderCall
from tests.ai.fakes import (
    anthropic_message,
    anthropic_sse_chunks,
    error,
    openai_chat,
    openai_sse_chunks,
    parse_sse,
    sse_response,
)

pytestmark = pytest.mark.django_db

LLAMA = "meta-llama/llama-3.3-70b-instruct"  # $0.12 / $0.30 per 1M in the default price table


def _booked(user):
    """The cost as the answer, the request log, the call row, the monthly roll-up and the budget book it."""
    return {
        AiRequest.objects.get(owner=user).cost_usd,
        ProviderCall.objects.get(provider="openrouter").cost_usd,
        AiUsageMonthly.objects.get(owner=user).cost_usd,
        AiSpend.objects.get(owner=user).spent_usd,
    }


# --- OpenRouter's own figure ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_openrouter_answers_are_booked_at_the_cost_it_reports(fake_ai, complete, user, settings, stream):
    """OpenRouter's usage carries what it charged (docs, "Usage Accounting": `cost`, in credits of one USD, in
    every response and in a stream's last chunk), which the price table only estimates (the model's price
    differs by the provider OpenRouter picks, and cache writes or per-request fees are not in it)."""
    settings.AI_ROUTES = {"simple": [["openrouter", LLAMA]]}
    usage = dict(usage=(1000, 200, 0), model=LLAMA, extra_usage={"cost": 0.0123, "is_byok": False})
    fake_ai.add("openrouter", sse_response(openai_sse_chunks(["Hi"], **usage)) if stream else openai_chat(**usage))
    resp = complete(stream=stream)
    body = parse_sse(resp.raw)[-1][1] if stream else resp.json()
    assert body["cost_usd"] == "0.012300"  # the table would say (1000 x 0.12 + 200 x 0.30) / 1M = 0.00018
    assert _booked(user) == {Decimal("0.0123")}


def test_an_openrouter_byok_answer_adds_what_the_provider_billed_the_accounts_own_key(
    fake_ai, complete, user, settings
):
    """With the account's own provider key (BYOK), `cost` is OpenRouter's fee alone: the inference is billed to
    that key, and `cost_details.upstream_inference_cost` says how much."""
    settings.AI_ROUTES = {"simple": [["openrouter", LLAMA]]}
    extra = {"cost": 0.0005, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.01}}
    fake_ai.add("openrouter", openai_chat(usage=(1000, 200, 0), model=LLAMA, extra_usage=extra))
    assert complete().json()["cost_usd"] == "0.010500"
    assert _booked(user) == {Decimal("0.0105")}


def test_an_openrouter_answer_without_a_cost_is_priced_from_the_table(fake_ai, complete, user, settings):
    settings.AI_ROUTES = {"simple": [["openrouter", LLAMA]]}
    fake_ai.add("openrouter", openai_chat(usage=(1000, 200, 0), model=LLAMA))
    assert complete().json()["cost_usd"] == "0.000180"
    assert _booked(user) == {Decimal("0.00018")}


def test_a_cost_field_from_another_provider_is_not_taken_for_a_bill(fake_ai, complete, user):
    """Only OpenRouter documents `usage.cost`; anything else an OpenAI-compatible vendor adds is not read as one."""
    fake_ai.add("openai", openai_chat(usage=(1000, 200, 0), extra_usage={"cost": 5}))
    assert complete().json()["cost_usd"] == "0.000270"  # (1000 x 0.15 + 200 x 0.60) / 1M


# --- Anthropic's prompt cache -------------------------------------------------------------------------------

# Anthropic counts its input apart: plain, read from its prompt cache, written to it (`cache_creation`: how much
# for five minutes, how much for an hour). It bills a read at 0.1x the input price, a five-minute write at 1.25x
# and an hour-long one at 2x (docs, "Prompt caching", pricing).
CACHE_USAGE = dict(
    usage=(1_000, 500, 20_000),
    model="claude-sonnet-4-6",
    extra_usage={
        "cache_creation_input_tokens": 10_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 6_000, "ephemeral_1h_input_tokens": 4_000},
    },
)
# claude-sonnet-4-6 ($3 input, $15 output): (1,000 x 3 + 20,000 x 0.30 + 6,000 x 3.75 + 4,000 x 6 + 500 x 15) / 1M;
# priced as plain input, the writes came to $0.0465.
CACHE_COST = Decimal("0.063")


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_anthropic_cache_writes_are_booked_at_the_cache_write_rates(fake_ai, complete, user, user_client, stream):
    """...and counted where the cost is shown: the answer's usage, the call log's units and the monthly usage,
    so a cost above the input price is explained by the writes it paid for."""
    if stream:
        fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["Hi"], **CACHE_USAGE)))
    else:
        fake_ai.add("anthropic", anthropic_message("Hi", **CACHE_USAGE))
    resp = complete(task="writing", stream=stream)
    body = parse_sse(resp.raw)[-1][1] if stream else resp.json()
    assert body["usage"] == {
        "input_tokens": 31_000,
        "output_tokens": 500,
        "cached_tokens": 20_000,
        "cache_write_tokens": 10_000,
    }
    assert Decimal(body["cost_usd"]) == CACHE_COST
    assert AiRequest.objects.get(owner=user).cost_usd == CACHE_COST
    call = ProviderCall.objects.get(provider="anthropic")
    assert (call.cost_usd, call.units["cache_write_tokens"]) == (CACHE_COST, 10_000)
    assert AiSpend.objects.get(owner=user).spent_usd == CACHE_COST
    usage = user_client.get("/api/v1/ai/usage/").json()
    (by_model,) = usage["by_model"]
    assert (usage["cache_write_tokens"], by_model["cache_write_tokens"], by_model["cached_tokens"]) == (
        10_000,
        10_000,
        20_000,
    )


def test_anthropic_cache_writes_are_in_the_request_log_and_the_hourly_rollups_as_in_the_monthly_usage(
    fake_ai, complete, user, user_client, admin_client
):
    """Every place that counts an answer's tokens counts its cache writes, and they agree: the request's row (admin:
    AI requests), the hourly roll-ups behind integrations/usage/ and the console, and the monthly ai/usage/."""
    from integrations.models import ProviderRollup

    fake_ai.add("anthropic", anthropic_message("Hi", **CACHE_USAGE))
    assert complete(task="writing").status_code == 200
    row = AiRequest.objects.get(owner=user)
    assert (row.cached_tokens, row.cache_write_tokens) == (20_000, 10_000)

    monthly = user_client.get("/api/v1/ai/usage/").json()
    (hourly,) = [
        p for p in user_client.get("/api/v1/integrations/usage/").json()["providers"] if p["provider"] == "anthropic"
    ]
    assert hourly["units"]["cache_write_tokens"] == monthly["cache_write_tokens"] == 10_000
    assert hourly["units"]["cached_tokens"] == monthly["cached_tokens"] == 20_000
    assert ProviderRollup.objects.get(provider="anthropic").cache_write_tokens == 10_000

    page = admin_client.get("/admin/ai/airequest/").content.decode()
    assert "Cache write tokens" in page and "10000" in page.replace(",", "")


def test_an_anthropic_stream_failing_after_message_start_is_booked_its_cache_writes_at_their_rates(
    fake_ai, complete, user, settings
):
    """message_start counts the input Anthropic bills, cache writes included: a stream that fails before any text
    is booked that input at the rates Anthropic bills it."""
    settings.AI_ROUTES = {"writing": [["anthropic", "claude-sonnet-4-6"]]}
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    started = anthropic_sse_chunks([], **CACHE_USAGE)[:2]
    fake_ai.add("anthropic", sse_response([*started, f"event: error\ndata: {json.dumps(overloaded)}\n\n".encode()]))
    assert complete(task="writing", stream=True).status_code == 503
    lost = CACHE_COST - Decimal("0.0075")  # the input alone: no answer
    assert AiRequest.objects.get(owner=user).cost_usd == lost
    assert AiSpend.objects.get(owner=user).spent_usd == lost


def test_the_budget_hold_covers_an_anthropic_prompt_written_to_its_cache(fake_ai, complete, user):
    """The hold is the request's largest cost: on Anthropic, its whole prompt written to the cache (1.25x the
    input price), as such an answer is booked; it is refused when that does not fit the budget."""
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("0.0001"))
    messages = [{"role": "user", "content": "x" * 39_965}]  # 40,000 characters with the tools: 10,000 tokens
    resp = complete(task="writing", messages=messages, max_tokens=1000)
    assert resp.status_code == 402
    # claude-sonnet-4-6: (10,000 x 3.75 + 1,000 x 15) / 1M, where plain input would hold $0.045.
    assert resp.json()["request_max_usd"] == "0.052500"
    assert fake_ai.sent == []


# A request may ask for Anthropic's hour-long prompt cache (cache_control, as its SDK's CacheControlEphemeralParam):
# an hour's write bills 2x the input price, not the five-minute write's 1.25x.
HOUR = {"type": "ephemeral", "ttl": "1h"}


def test_a_request_asking_for_the_hour_long_cache_is_held_at_the_hour_rate(fake_ai, complete, user):
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("0.0001"))
    messages = [{"role": "user", "content": "x" * 39_965}]  # 10,000 tokens, as above
    resp = complete(task="writing", messages=messages, max_tokens=1000, cache_control=HOUR)
    assert resp.status_code == 402
    # claude-sonnet-4-6: (10,000 x 6.00 + 1,000 x 15) / 1M, where a five-minute write would hold $0.0525.
    assert resp.json()["request_max_usd"] == "0.075000"
    five = complete(task="writing", messages=messages, max_tokens=1000, cache_control={"type": "ephemeral"})
    assert five.json()["request_max_usd"] == "0.052500"
    assert fake_ai.sent == []


# Anthropic's usage without its `cache_creation` breakdown (optional in the SDK's Usage): 10,000 tokens written.
UNSPLIT_USAGE = dict(
    usage=(1_000, 500, 20_000), model="claude-sonnet-4-6", extra_usage={"cache_creation_input_tokens": 10_000}
)


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_the_hour_long_cache_is_sent_to_anthropic_and_its_writes_booked_at_the_hour_rate(
    fake_ai, complete, user, settings, stream
):
    settings.AI_ROUTES = {"writing": [["anthropic", "claude-sonnet-4-6"]]}
    if stream:
        fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["Hi"], **UNSPLIT_USAGE)))
    else:
        fake_ai.add("anthropic", anthropic_message("Hi", **UNSPLIT_USAGE))
    resp = complete(task="writing", stream=stream, cache_control=HOUR)
    body = parse_sse(resp.raw)[-1][1] if stream else resp.json()
    (sent,) = fake_ai.to("anthropic")
    assert sent.json["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    # (1,000 x 3 + 20,000 x 0.30 + 10,000 x 6.00 + 500 x 15) / 1M; at the five-minute rate it was $0.054.
    cost = Decimal("0.0765")
    assert Decimal(body["cost_usd"]) == cost
    assert AiRequest.objects.get(owner=user).cost_usd == cost
    assert AiSpend.objects.get(owner=user).spent_usd == cost


def test_anthropic_s_own_split_of_the_writes_is_booked_as_it_says(fake_ai, complete, user, settings):
    """With `cache_creation` in the usage, its split is what Anthropic billed, whatever TTL was asked for."""
    settings.AI_ROUTES = {"writing": [["anthropic", "claude-sonnet-4-6"]]}
    fake_ai.add("anthropic", anthropic_message("Hi", **CACHE_USAGE))
    assert Decimal(complete(task="writing", cache_control=HOUR).json()["cost_usd"]) == CACHE_COST


def test_without_cache_control_anthropic_is_sent_none_and_writes_are_five_minute_ones(
    fake_ai, complete, user, settings
):
    settings.AI_ROUTES = {"writing": [["anthropic", "claude-sonnet-4-6"]]}
    fake_ai.add("anthropic", anthropic_message("Hi", **UNSPLIT_USAGE))
    assert Decimal(complete(task="writing").json()["cost_usd"]) == Decimal("0.054")
    assert "cache_control" not in fake_ai.to("anthropic")[0].json


@pytest.mark.parametrize(
    "cache_control",
    [{"type": "ephemeral", "ttl": "2h"}, {"type": "persistent"}, {"ttl": "1h"}, {"type": "ephemeral", "size": 1}],
)
def test_a_cache_control_anthropic_would_not_take_is_a_400(fake_ai, complete, user, cache_control):
    resp = complete(task="writing", cache_control=cache_control)
    assert resp.status_code == 400 and "cache_control" in resp.content.decode()
    assert fake_ai.sent == []


# --- an OpenAI-compatible stream that fails before any text ---------------------------------------------------

PROMPT = [{"role": "user", "content": "x" * 39_965}]  # 40,000 characters with the tools ([]): 10,000 tokens


def _failing_before_any_text(model):
    """A 200 stream: the role chunk, then the `{"error": ...}` chunk OpenAI and OpenRouter send when the answer
    fails after its 200 (OpenRouter docs, "Errors": a 200 means the model started processing the request)."""
    role = openai_sse_chunks([], model=model)[:1]
    broken = {
        "id": "gen-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "error": {"code": 502, "message": "Upstream provider disconnected"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    return sse_response([*role, f"data: {json.dumps(broken)}\n\n".encode()])


def test_an_openai_compatible_stream_failing_before_any_text_is_booked_its_input_with_the_next_answer(
    fake_ai, complete, user
):
    """The provider had the prompt and bills its input, as Anthropic's message_start says of its own: the hub's
    estimate of it is booked (OpenAI tells its usage only at the end) with the answer the next provider gave."""
    fake_ai.add("openai", _failing_before_any_text("gpt-4o-mini"))
    fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["fine"], usage=(10_000, 3, 0))))
    events = parse_sse(complete(stream=True, messages=PROMPT).raw)
    kind, done = events[-1]
    assert (kind, done["provider"]) == ("done", "anthropic")
    assert [(f["provider"], f["error"]) for f in done["fallbacks"]] == [("openai", "provider_unavailable")]
    # gpt-4o-mini: 10,000 x 0.15 / 1M; claude-haiku-4-5: (10,000 x 1.00 + 3 x 5.00) / 1M
    lost, answered = Decimal("0.0015"), Decimal("0.010015")
    assert Decimal(done["cost_usd"]) == answered
    calls = {c.provider: c for c in ProviderCall.objects.all()}
    assert (calls["openai"].outcome, calls["openai"].cost_usd, calls["openai"].units["input_tokens"]) == (
        "error",
        lost,
        10_000,
    )
    assert AiUsageMonthly.objects.get(owner=user, provider="openai").cost_usd == lost
    assert AiRequest.objects.get(owner=user).cost_usd == lost + answered
    assert AiSpend.objects.get(owner=user).spent_usd == lost + answered


def test_an_openrouter_stream_failing_before_any_text_with_no_fallback_is_booked_its_input(
    fake_ai, complete, user, settings
):
    settings.AI_ROUTES = {"simple": [["openrouter", LLAMA]]}
    fake_ai.add("openrouter", _failing_before_any_text(LLAMA))
    resp = complete(stream=True, messages=PROMPT)
    assert resp.status_code == 503 and resp.json()["error"] == "ai_unavailable"
    lost = Decimal("0.0012")  # 10,000 x 0.12 / 1M
    logged = AiRequest.objects.get(owner=user)
    assert (logged.outcome, logged.cost_usd) == ("failed", lost)
    assert ProviderCall.objects.get().cost_usd == lost
    assert AiSpend.objects.get(owner=user).spent_usd == lost


def test_a_stream_refused_before_its_200_books_nothing(fake_ai, complete, user, settings):
    """A refusal in the HTTP status (here a 503) is a call the provider did not process: nothing is billed."""
    settings.AI_ROUTES = {"simple": [["openrouter", LLAMA]]}
    fake_ai.add("openrouter", error(503, "No provider available"))
    assert complete(stream=True, messages=PROMPT).status_code == 503
    assert AiRequest.objects.get(owner=user).cost_usd == 0
    assert ProviderCall.objects.get().cost_usd in (None, 0)
