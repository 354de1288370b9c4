"""What each vendor really sends, read the way its documentation (and its bug tracker) says it is sent."""

import json

import httpx2
import pytest

from integrations import limiter
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


# --- Anthropic's account refusals -------------------------------------------------------


def _spend_limit(code):
    body = {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Spend limit reached.", "details": {"error_code": code}},
    }
    return httpx2.Response(429, json=body, headers={"retry-after": "0.1"})


@pytest.mark.parametrize(
    "refusal",
    [
        # Out of prepaid credit: a 400 invalid_request_error, not a billing_error (anthropics/claude-code #4684 ...).
        lambda: error(
            400,
            "Your credit balance is too low to access the Anthropic API. "
            "Please go to Plans & Billing to upgrade or purchase credits.",
            anthropic=True,
            type_="invalid_request_error",
        ),
        # The workspace's own spend limit: a 400 as well.
        lambda: error(
            400,
            "You have reached your specified API usage limits. You will regain access on 2027-01-01 at 00:00 UTC.",
            anthropic=True,
            type_="invalid_request_error",
        ),
        # The tier's monthly threshold, or the contract's: 429s whose details.error_code says so (SDK 2.x).
        lambda: _spend_limit("enforced_spend_limit_reached"),
        lambda: _spend_limit("contract_spend_limit_reached"),
    ],
    ids=["credit-balance-too-low", "usage-limit", "enforced-spend-limit", "contract-spend-limit"],
)
def test_an_anthropic_account_out_of_credit_or_spend_falls_through_and_is_not_asked_again(
    fake_ai, complete, settings, refusal
):
    settings.AI_ROUTES = {
        "writing": [["anthropic", "claude-sonnet-4-6"], ["anthropic", "claude-haiku-4-5"], ["openai", "gpt-4.1"]]
    }
    fake_ai.add("anthropic", refusal())
    fake_ai.add("openai", openai_chat("from openai", model="gpt-4.1"))
    resp = complete(task="writing")
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["provider"] == "openai"
    assert [(f["provider"], f["error"]) for f in body["fallbacks"]] == [("anthropic", "provider_quota_exceeded")]
    assert len(fake_ai.to("anthropic")) == 1  # the account, not the model: claude-haiku-4-5 is not asked


def test_an_anthropic_400_about_the_request_still_ends_the_walk(fake_ai, complete):
    fake_ai.add(
        "anthropic",
        error(400, "messages: roles must alternate", anthropic=True, type_="invalid_request_error"),
    )
    resp = complete(task="writing")
    assert resp.status_code == 502
    assert resp.json()["error"] == "provider_rejected"
    assert fake_ai.to("openai") == []


# --- Anthropic's error events inside a 200 stream ------------------------------------------


def _anthropic_error_event_after_message_start(error_type):
    """message_start, a text block's start, then an `error` event: no text yet, so the walk may still fall back."""
    event = {"type": "error", "error": {"type": error_type, "message": "Stream interrupted."}}
    return anthropic_sse_chunks([], usage=(100, 5, 0))[:2] + [f"event: error\ndata: {json.dumps(event)}\n\n".encode()]


@pytest.mark.parametrize(
    "error_type, http_status, code",
    [("rate_limit_error", 429, "provider_rate_limited"), ("timeout_error", 504, "provider_unavailable")],
)
def test_an_anthropic_stream_error_event_is_classified_by_its_type(fake_ai, complete, error_type, http_status, code):
    """The HTTP status was 200, so the event's type is the only status there is (Anthropic's error table): a rate
    limit or a timeout is worth the next provider, as it is when Anthropic answers it with an HTTP status."""
    fake_ai.add("anthropic", sse_response(_anthropic_error_event_after_message_start(error_type)))
    fake_ai.add("openai", sse_response(openai_sse_chunks(["fine"], model="gpt-4.1")))
    resp = complete(task="writing", stream=True)
    assert resp.status_code == 200, resp.content
    kind, done = parse_sse(resp.raw)[-1]
    assert (kind, done["provider"], done["content"]) == ("done", "openai", "fine")
    assert [(f["provider"], f["error"], f["http_status"]) for f in done["fallbacks"]] == [
        ("anthropic", code, http_status)
    ]


def test_an_anthropic_stream_error_event_about_the_request_still_ends_the_walk(fake_ai, complete):
    fake_ai.add("anthropic", sse_response(_anthropic_error_event_after_message_start("invalid_request_error")))
    resp = complete(task="writing", stream=True)
    assert resp.status_code == 502
    assert resp.json()["error"] == "provider_rejected"
    assert fake_ai.to("openai") == []


# --- rate limits ----------------------------------------------------------------------------


def test_a_429_with_only_retry_after_ms_is_waited_out_once_within_the_deadline(fake_ai, complete, settings):
    """OpenAI (and Azure, behind GitHub Models) may say when to come back in milliseconds alone; the SDKs read
    `retry-after-ms` before `retry-after`."""
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"]]}
    fake_ai.add("openai", error(429, "slow down", headers={"retry-after-ms": "200"}), openai_chat("finally"))
    body = complete().json()
    assert body["content"] == "finally"
    assert [f["retry_after"] for f in body["fallbacks"]] == [0.2]
    assert len(fake_ai.to("openai")) == 2


def test_retry_after_ms_is_preferred_to_the_rounded_retry_after(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"]]}
    fake_ai.add("openai", error(429, "slow down", headers={"retry-after-ms": "150", "retry-after": "1"}))
    fake_ai.add("openai", openai_chat("finally"))
    body = complete().json()
    assert [f["retry_after"] for f in body["fallbacks"]] == [0.15]


def _gemini_resource_exhausted(retry_delay):
    """Gemini's 429 as its OpenAI-compatible endpoint sends it: a list of Google errors, the wait in a
    google.rpc.RetryInfo detail and no Retry-After header (continuedev/continue #9570, #11926)."""
    error = {
        "code": 429,
        "message": f"You exceeded your current quota. Please retry in {retry_delay}.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"url": "https://ai.google.dev/"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
        ],
    }
    return httpx2.Response(429, json=[{"error": error}])


def test_a_gemini_429_is_waited_out_for_its_retry_info_delay(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["gemini", "gemini-2.5-flash-lite"], ["anthropic", "claude-haiku-4-5"]]}
    fake_ai.add("gemini", _gemini_resource_exhausted("17s"))
    fake_ai.add("anthropic", anthropic_message("from anthropic"), anthropic_message("again"))
    body = complete().json()
    assert body["provider"] == "anthropic"
    assert [(f["provider"], f["error"], f["retry_after"]) for f in body["fallbacks"]] == [
        ("gemini", "provider_rate_limited", 17.0)
    ]
    # The limiter pauses Gemini for that long, as it does for a Retry-After header: not asked again meanwhile.
    assert 16 < limiter.blocked_for("gemini") <= 17
    assert complete().json()["fallbacks"][0]["error"] == "rate_limited_outbound"
    assert len(fake_ai.to("gemini")) == 1


def test_a_short_gemini_retry_info_delay_is_waited_out_once(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["gemini", "gemini-2.5-flash-lite"]]}
    fake_ai.add("gemini", _gemini_resource_exhausted("0.2s"), openai_chat("finally", model="gemini-2.5-flash-lite"))
    body = complete().json()
    assert body["content"] == "finally"
    assert [f["retry_after"] for f in body["fallbacks"]] == [0.2]


# --- Gemini's OpenAI-compatible stream ------------------------------------------------------


def _gemini_chunks(deltas, finish="stop"):
    def chunk(delta, finish_reason=None):
        body = {"id": "g1", "object": "chat.completion.chunk", "created": 1, "model": "gemini-2.5-flash-lite"}
        return {**body, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    usage = {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}
    events = [chunk({"role": "assistant", **d}) for d in deltas] + [{**chunk({}, finish), "usage": usage}]
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def _call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_gemini_streamed_tool_calls_without_an_index_stay_apart(fake_ai, complete):
    """Gemini's OpenAI-compatible stream sends each tool call without `index` (openai-python #2806, OpenMAIC
    #1556) and ends a tool-calling answer with finish_reason "stop" (python-genai #2868), where its non-streamed
    answer says "tool_calls"."""
    fake_ai.add(
        "gemini",
        sse_response(
            _gemini_chunks(
                [
                    {"tool_calls": [_call("function-call-1", "weather", '{"city": "Paris"}')]},
                    {"tool_calls": [_call("function-call-2", "weather", '{"city": ')]},
                    {"tool_calls": [{"function": {"arguments": '"Lyon"}'}}]},  # the rest of call 2
                ]
            )
        ),
    )
    resp = complete(provider="gemini", model="gemini-2.5-flash-lite", stream=True, tools=[{"name": "weather"}])
    kind, done = parse_sse(resp.raw)[-1]
    assert kind == "done", done
    assert done["tool_calls"] == [
        {"id": "function-call-1", "name": "weather", "arguments": {"city": "Paris"}},
        {"id": "function-call-2", "name": "weather", "arguments": {"city": "Lyon"}},
    ]
    assert done["finish_reason"] == "tool_calls"


GEMINI_3 = "gemini-3-flash-preview"
SIGNED = {"google": {"thought_signature": "CvMBAY89a1+sig/A=="}}


def _gemini_signed_call(call_id, city, extra_content=SIGNED):
    return {**_call(call_id, "weather", json.dumps({"city": city})), "extra_content": extra_content}


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_gemini_thought_signatures_go_back_with_the_tool_calls_they_signed(fake_ai, complete, settings, stream):
    """Gemini 3 signs its reasoning on a function call (docs, "Thought signatures"; its OpenAI-compatible endpoint
    puts the signature in the call's `extra_content.google.thought_signature`) and refuses with a 400 the next
    turn whose function call comes back without it. The hub hands it to the client with the call and, when the
    client sends the conversation on, back to Gemini where it came from; another vendor is sent none."""
    settings.AI_MODEL_PRICES = {**settings.AI_MODEL_PRICES, "gemini": {GEMINI_3: {"input": "0.50", "output": "3.00"}}}
    signed = _gemini_signed_call("function-call-1", "Paris")
    unsigned = _gemini_signed_call("function-call-2", "Lyon", extra_content=None)  # parallel calls: the first signs
    if stream:
        fake_ai.add("gemini", sse_response(_gemini_chunks([{"tool_calls": [signed]}, {"tool_calls": [unsigned]}])))
    else:
        answer = openai_chat(None, model=GEMINI_3, tool_calls=[{"id": "x", "name": "weather", "arguments": {}}])
        body = json.loads(answer.content)
        body["choices"][0]["message"]["tool_calls"] = [signed, {k: v for k, v in unsigned.items() if v is not None}]
        fake_ai.add("gemini", httpx2.Response(200, json=body))
    first = complete(provider="gemini", model=GEMINI_3, stream=stream, tools=[{"name": "weather"}])
    answer = parse_sse(first.raw)[-1][1] if stream else first.json()
    assert answer["tool_calls"] == [
        {
            "id": "function-call-1",
            "name": "weather",
            "arguments": {"city": "Paris"},
            "thought_signature": SIGNED["google"]["thought_signature"],
        },
        {"id": "function-call-2", "name": "weather", "arguments": {"city": "Lyon"}},
    ]
    # The client sends the conversation on with the tool calls as the hub gave them, and the tools' results.
    conversation = [
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {"role": "assistant", "content": "", "tool_calls": answer["tool_calls"]},
        {"role": "tool", "tool_call_id": "function-call-1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "function-call-2", "content": "rain"},
    ]
    fake_ai.add("gemini", openai_chat("Sunny in Paris, rain in Lyon.", model=GEMINI_3))
    fake_ai.add("openai", openai_chat("Sunny in Paris, rain in Lyon."))
    for provider, model in (("gemini", GEMINI_3), ("openai", "gpt-4o-mini")):
        resp = complete(provider=provider, model=model, messages=conversation, tools=[{"name": "weather"}])
        assert resp.status_code == 200, resp.json()
    sent_to_gemini = fake_ai.to("gemini")[-1].json["messages"][1]["tool_calls"]
    assert [c.get("extra_content") for c in sent_to_gemini] == [SIGNED, None]
    sent_to_openai = fake_ai.to("openai")[-1].json["messages"][1]["tool_calls"]
    assert all("extra_content" not in c for c in sent_to_openai)


def test_a_thought_signature_is_taken_back_in_geminis_own_shape_too(fake_ai, complete, settings):
    """A client that keeps Gemini's OpenAI-format tool calls as they came (`extra_content`) sends them back so."""
    settings.AI_MODEL_PRICES = {**settings.AI_MODEL_PRICES, "gemini": {GEMINI_3: {"input": "0.50", "output": "3.00"}}}
    conversation = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [_gemini_signed_call("function-call-1", "Paris")]},
        {"role": "tool", "tool_call_id": "function-call-1", "content": "sunny"},
    ]
    fake_ai.add("gemini", openai_chat("Sunny.", model=GEMINI_3))
    assert complete(provider="gemini", model=GEMINI_3, messages=conversation).status_code == 200
    assert fake_ai.to("gemini")[0].json["messages"][1]["tool_calls"][0]["extra_content"] == SIGNED


def test_tool_calls_another_vendor_made_reach_gemini_with_its_documented_dummy_signature(fake_ai, complete, settings):
    """A tool loop that falls back to Gemini mid-way sends it calls no Gemini model signed: Gemini 3 refuses a step
    whose first function call has no signature, and documents a dummy for a conversation moved from another model
    (docs, "Thought signatures", FAQ). The first call of such a step gets it; a parallel call needs none, a call
    Gemini signed keeps its own, and no other vendor is sent any."""
    settings.AI_MODEL_PRICES = {**settings.AI_MODEL_PRICES, "gemini": {GEMINI_3: {"input": "0.50", "output": "3.00"}}}
    settings.AI_ROUTES = {"writing": [["anthropic", "claude-sonnet-4-6"], ["gemini", GEMINI_3]]}
    tools = [{"name": "weather"}]
    fake_ai.add(
        "anthropic",
        anthropic_message(
            None,
            tool_uses=[
                {"id": "toolu_1", "name": "weather", "arguments": {"city": "Paris"}},
                {"id": "toolu_2", "name": "weather", "arguments": {"city": "Lyon"}},
            ],
        ),
    )
    first = complete(task="writing", tools=tools, messages=[{"role": "user", "content": "Paris and Lyon?"}]).json()
    assert first["provider"] == "anthropic" and len(first["tool_calls"]) == 2
    conversation = [
        {"role": "user", "content": "Paris and Lyon?"},
        {"role": "assistant", "content": "", "tool_calls": first["tool_calls"]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "rain"},
        {"role": "assistant", "content": None, "tool_calls": [_gemini_signed_call("function-call-3", "Nice")]},
        {"role": "tool", "tool_call_id": "function-call-3", "content": "windy"},
    ]
    fake_ai.add("anthropic", error(529, "Overloaded", anthropic=True, type_="overloaded_error"))
    fake_ai.add("gemini", openai_chat("Sunny, rain, windy.", model=GEMINI_3))
    resp = complete(task="writing", tools=tools, messages=conversation)
    assert (resp.status_code, resp.json()["provider"]) == (200, "gemini"), resp.json()
    sent = fake_ai.to("gemini")[0].json["messages"]
    dummy = {"google": {"thought_signature": "skip_thought_signature_validator"}}
    assert [c.get("extra_content") for c in sent[1]["tool_calls"]] == [dummy, None]
    assert [c.get("extra_content") for c in sent[4]["tool_calls"]] == [SIGNED]
    assert "thought_signature" not in json.dumps(fake_ai.to("anthropic")[1].json)


def test_a_thought_signature_that_is_not_a_string_is_a_400(fake_ai, complete):
    call = {"id": "call_1", "name": "weather", "arguments": {}, "thought_signature": 7}
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    resp = complete(messages=conversation)
    assert resp.status_code == 400
    assert "thought_signature must be a non-empty string" in json.dumps(resp.json())
    assert fake_ai.sent == []


def test_a_forced_tool_call_that_finishes_with_stop_is_reported_as_tool_calls(fake_ai, complete):
    """OpenAI ends an answer whose tool call was forced by tool_choice with "stop"; the hub's one shape says
    "tool_calls" whenever the answer holds tool calls, as Anthropic's tool_use always does."""
    tool = {"id": "call_1", "name": "weather", "arguments": {"city": "Nice"}}
    fake_ai.add("openai", openai_chat(None, tool_calls=[tool], finish_reason="stop"))
    body = complete(tools=[{"name": "weather"}], tool_choice={"type": "function", "function": {"name": "weather"}})
    assert body.status_code == 200, body.json()
    assert (body.json()["tool_calls"], body.json()["finish_reason"]) == ([tool], "tool_calls")


# --- finish reasons ----------------------------------------------------------------------------


def test_an_anthropic_answer_cut_by_the_context_window_finishes_with_length(fake_ai, complete):
    """Anthropic's newer models stop with model_context_window_exceeded when the answer reaches the context
    window before max_tokens (SDK 2.x StopReason): cut short, as max_tokens is."""
    fake_ai.add("anthropic", anthropic_message("A long answer that", stop_reason="model_context_window_exceeded"))
    body = complete(task="writing").json()
    assert (body["content"], body["finish_reason"]) == ("A long answer that", "length")


# --- OpenRouter's spending limits --------------------------------------------------------------


def _openrouter_error(status, message, limit_source, headers=None):
    body = {"error": {"code": status, "message": message, "metadata": {"limit_source": limit_source}}}
    return httpx2.Response(status, json=body, headers=headers or {})


def test_an_openrouter_402_with_retry_after_is_waited_out_not_taken_for_no_credit(fake_ai, complete, settings):
    """OpenRouter's in-flight spending budget (running requests' estimated cost against the balance) answers 402
    with Retry-After: a wait, where a 402 without it is out of credit (OpenRouter docs, "Errors": "A 402 without
    the header is not a wait-and-retry case")."""
    settings.AI_ROUTES = {"simple": [["openrouter", "meta-llama/llama-3.3-70b-instruct"]]}
    busy = _openrouter_error(
        402, "In-flight budget exhausted", "openrouter_in_flight_budget", headers={"retry-after": "0.2"}
    )
    fake_ai.add("openrouter", busy, openai_chat("after the wait", model="meta-llama/llama-3.3-70b-instruct"))
    resp = complete()
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["content"] == "after the wait"
    assert [(f["provider"], f["error"], f["http_status"], f["retry_after"]) for f in body["fallbacks"]] == [
        ("openrouter", "provider_rate_limited", 402, 0.2)
    ]


def test_an_openrouter_key_or_workspace_budget_403_is_not_asked_again_for_another_model(fake_ai, complete, settings):
    """A spent key limit, workspace or guardrail budget is a 403 naming its limit_source: the account's, so no
    other OpenRouter model on the route is asked."""
    settings.AI_ROUTES = {
        "simple": [
            ["openrouter", "meta-llama/llama-3.3-70b-instruct"],
            ["openrouter", "deepseek/deepseek-r1"],
            ["anthropic", "claude-haiku-4-5"],
        ]
    }
    fake_ai.add("openrouter", _openrouter_error(403, "Key limit exceeded", "openrouter_key_limit"))
    fake_ai.add("anthropic", anthropic_message("ok"))
    body = complete().json()
    assert body["provider"] == "anthropic"
    assert [(f["provider"], f["error"]) for f in body["fallbacks"]] == [("openrouter", "provider_quota_exceeded")]
    assert len(fake_ai.to("openrouter")) == 1


# --- errors inside a 200 answer -------------------------------------------------------------------


def test_an_openrouter_error_chunk_mid_stream_ends_the_stream_with_its_message(fake_ai, complete, settings):
    """OpenRouter (as OpenAI) reports a failure after the 200 as a data chunk with an `error` field; the openai
    SDK raises it as a bare APIError. The client's error event says what the provider said."""
    settings.AI_ROUTES = {"simple": [["openrouter", "meta-llama/llama-3.3-70b-instruct"]]}
    chunks = openai_sse_chunks(["Once upon"], model="meta-llama/llama-3.3-70b-instruct")[:2]
    broken = {
        "id": "gen-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "meta-llama/llama-3.3-70b-instruct",
        "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
    fake_ai.add("openrouter", sse_response([*chunks, f"data: {json.dumps(broken)}\n\n".encode()]))
    events = parse_sse(complete(stream=True).raw)
    assert events[0] == ("delta", {"content": "Once upon"})
    kind, body = events[-1]
    assert (kind, body["error"], body["provider"]) == ("error", "provider_unavailable", "openrouter")
    assert "Provider disconnected unexpectedly" in body["detail"]


def test_an_openrouter_error_in_a_200_body_falls_through_with_its_message(fake_ai, complete, settings):
    """OpenRouter: 'any error occurred while the LLM is producing the output will be emitted in the response
    body' of a 200 (docs, "Errors"), with no choices."""
    settings.AI_ROUTES = {
        "simple": [["openrouter", "meta-llama/llama-3.3-70b-instruct"], ["anthropic", "claude-haiku-4-5"]]
    }
    fake_ai.add("openrouter", httpx2.Response(200, json={"error": {"code": 502, "message": "Upstream model is down"}}))
    fake_ai.add("anthropic", anthropic_message("ok"))
    body = complete().json()
    assert body["provider"] == "anthropic"
    (fallback,) = body["fallbacks"]
    assert (fallback["provider"], fallback["error"], fallback["http_status"]) == (
        "openrouter",
        "provider_unavailable",
        502,
    )
    assert "Upstream model is down" in fallback["detail"]


@pytest.mark.parametrize(
    "answer",
    [
        httpx2.Response(200, text="<html>Bad gateway</html>", headers={"content-type": "text/html"}),
        httpx2.Response(200, json=["not", "an", "object"]),
        httpx2.Response(200, json={"choices": [{"index": 0, "message": "Hello", "finish_reason": "stop"}]}),
    ],
    ids=["html", "json-array", "message-not-an-object"],
)
def test_an_openai_compatible_200_that_is_not_a_json_object_falls_through(fake_ai, complete, answer):
    """A proxy's HTML page or a broken body under a 200 is the provider's fault, not a crash of the walk (the
    answer is read as plain JSON: ai.providers.openai_chat._openai_complete)."""
    fake_ai.add("openai", answer)
    fake_ai.add("anthropic", anthropic_message("ok"))
    body = complete().json()
    assert body["provider"] == "anthropic"
    (fallback,) = body["fallbacks"]
    assert (fallback["provider"], fallback["error"]) == ("openai", "provider_unavailable")


# --- a prompt longer than the model's context window --------------------------------------------------


@pytest.mark.parametrize(
    "provider, refusal",
    [
        (
            "openai",
            lambda: error(
                400,
                "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                "212000 tokens.",
                code="context_length_exceeded",
                type_="invalid_request_error",
            ),
        ),
        (
            "anthropic",
            lambda: error(
                400, "prompt is too long: 205351 tokens > 200000 maximum", anthropic=True, type_="invalid_request_error"
            ),
        ),
        (
            # Gemini's compatible endpoint answers its errors as a list.
            "gemini",
            lambda: httpx2.Response(
                400,
                json=[
                    {
                        "error": {
                            "code": 400,
                            "message": "The input token count (1200293) exceeds the maximum number of tokens "
                            "allowed (1048576).",
                            "status": "INVALID_ARGUMENT",
                        }
                    }
                ],
            ),
        ),
        (
            "openrouter",
            lambda: httpx2.Response(
                400,
                json={
                    "error": {
                        "code": 400,
                        "message": "This endpoint's maximum context length is 131072 tokens. However, you "
                        "requested about 250000 tokens.",
                    }
                },
            ),
        ),
    ],
    ids=["openai", "anthropic", "gemini", "openrouter"],
)
def test_a_prompt_too_long_for_one_model_is_answered_by_the_next_one_on_the_route(
    fake_ai, complete, settings, provider, refusal
):
    """A context window is the model's, not the request's fault: the next model on the route may take the prompt,
    as OpenRouter's own model fallbacks do ("any error can trigger the use of a fallback model, including context
    length validation errors")."""
    models = {
        "openai": "gpt-4o-mini",
        "anthropic": "claude-haiku-4-5",
        "gemini": "gemini-2.5-flash-lite",
        "openrouter": "meta-llama/llama-3.3-70b-instruct",
    }
    settings.AI_ROUTES = {"simple": [[provider, models[provider]], ["xai", "grok-3-mini"]]}
    fake_ai.add(provider, refusal())
    fake_ai.add("xai", openai_chat("read it all", model="grok-3-mini"))
    resp = complete()
    body = resp.json()
    assert resp.status_code == 200, body
    assert (body["provider"], body["content"]) == ("xai", "read it all")
    assert [(f["provider"], f["error"], f["http_status"]) for f in body["fallbacks"]] == [
        (provider, "context_length_exceeded", 400)
    ]


def test_a_prompt_too_long_for_every_model_on_the_route_is_the_clients_400(fake_ai, complete, settings):
    """Not 502 (a client's SDK retries a 5xx, and the provider is not at fault) nor 503 (nothing will change):
    400, naming the refusals."""
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"], ["anthropic", "claude-haiku-4-5"]]}
    fake_ai.add(
        "openai",
        error(400, "This model's maximum context length is 128000 tokens.", code="context_length_exceeded"),
    )
    fake_ai.add(
        "anthropic",
        error(400, "prompt is too long: 205351 tokens > 200000 maximum", anthropic=True, type_="invalid_request_error"),
    )
    resp = complete()
    body = resp.json()
    assert resp.status_code == 400, body
    assert (body["error"], body["provider"]) == ("context_length_exceeded", "anthropic")
    assert "prompt is too long" in body["detail"]
    assert [(t["provider"], t["error"]) for t in body["tried"]] == [
        ("openai", "context_length_exceeded"),
        ("anthropic", "context_length_exceeded"),
    ]
    assert "Retry-After" not in resp


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum prompt length is 131072 but the request contains 250000 tokens.",
        "Failed to start sampling: [input_too_large] Current message (1149677 tokens) exceeds budget (975424 tokens)",
    ],
    ids=["prompt-length", "input-too-large"],
)
def test_an_xai_prompt_too_long_is_read_from_its_own_error_shape(fake_ai, complete, settings, message):
    """xAI's errors are {"code": <a sentence>, "error": <the message>}: the message is the `error` string."""
    settings.AI_ROUTES = {"simple": [["xai", "grok-3-mini"], ["openai", "gpt-4o-mini"]]}
    fake_ai.add("xai", httpx2.Response(400, json={"code": "Client specified an invalid argument", "error": message}))
    fake_ai.add("openai", openai_chat("read it all"))
    body = complete().json()
    assert body["provider"] == "openai"
    (fallback,) = body["fallbacks"]
    assert (fallback["provider"], fallback["error"]) == ("xai", "context_length_exceeded")
    assert message in fallback["detail"]


# --- a retired provider -------------------------------------------------------------------------------


def test_the_default_routes_do_not_ask_github_models_which_github_retired(fake_ai, complete, settings):
    """GitHub retired GitHub Models on 2026-07-30 (github.blog changelog; its inference API answers 410
    `github_models_retirement_brownout`): with its token still set, a default route that every other provider
    failed must not end in its refusal."""
    from config.settings import ai as defaults

    settings.AI_ROUTES = defaults.AI_ROUTES
    for task in ("simple", "writing"):
        for provider, _ in settings.AI_ROUTES[task]:
            fake_ai.add(provider, error(503, "overloaded"))
        resp = complete(task=task)
        assert (resp.status_code, resp.json()["error"]) == (503, "ai_unavailable")
        assert "github_models" not in {t["provider"] for t in resp.json()["tried"]}
    assert fake_ai.to("github_models") == []


# GitHub Models' inference API has answered 410 Gone since its retirement (brownouts first, then for good); OpenAI
# answers 404 model_not_found for a model it shut down. Either says "this provider no longer serves this model",
# not "the request is wrong": another provider on the route may well answer it.
GONE = [
    (
        "github_models",
        "openai/gpt-4.1-mini",
        lambda: error(
            410,
            "GitHub Models is temporarily unavailable as part of a scheduled retirement brownout.",
            code="github_models_retirement_brownout",
        ),
        410,
    ),
    (
        "openai",
        "gpt-4o-mini",
        lambda: error(
            404,
            "The model `gpt-4o-mini` does not exist or you do not have access to it.",
            code="model_not_found",
            type_="invalid_request_error",
        ),
        404,
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
@pytest.mark.parametrize("provider, model, gone, status", GONE, ids=["github-models-410", "openai-404"])
def test_a_model_the_provider_no_longer_serves_falls_through_to_the_next_provider(
    fake_ai, complete, settings, provider, model, gone, status, stream
):
    settings.AI_ROUTES = {"simple": [[provider, model], ["anthropic", "claude-haiku-4-5"]]}
    fake_ai.add(provider, gone())
    if stream:
        fake_ai.add("anthropic", sse_response(anthropic_sse_chunks(["from anthropic"])))
    else:
        fake_ai.add("anthropic", anthropic_message("from anthropic"))
    resp = complete(stream=stream)
    assert resp.status_code == 200, resp.content
    body = parse_sse(resp.raw)[-1][1] if stream else resp.json()
    assert (body["provider"], body["content"]) == ("anthropic", "from anthropic")
    assert [(f["provider"], f["error"], f["http_status"]) for f in body["fallbacks"]] == [
        (provider, "provider_rejected", status)
    ]


def test_a_route_whose_every_provider_no_longer_serves_its_model_is_unavailable_not_rejected(
    fake_ai, complete, settings
):
    """What a route gets when every provider refused for reasons of its own: 503 naming each refusal, not the
    502 `provider_rejected` of a request the provider found wrong."""
    settings.AI_ROUTES = {"simple": [[p, m] for p, m, _, _ in GONE]}
    for provider, _, gone, _ in GONE:
        fake_ai.add(provider, gone())
    resp = complete()
    body = resp.json()
    assert (resp.status_code, body["error"]) == (503, "ai_unavailable"), body
    assert [(t["provider"], t["http_status"]) for t in body["tried"]] == [("github_models", 410), ("openai", 404)]


def test_after_a_410_the_walk_asks_none_of_that_providers_other_models(fake_ai, complete, settings):
    """410 is GitHub Models' answer to every request since its retirement: its other models are gone too."""
    settings.AI_ROUTES = {
        "simple": [
            ["github_models", "openai/gpt-4.1-mini"],
            ["github_models", "openai/gpt-4.1"],
            ["anthropic", "claude-haiku-4-5"],
        ]
    }
    fake_ai.add("github_models", GONE[0][2]())
    fake_ai.add("github_models", openai_chat("from a retired API", model="openai/gpt-4.1"))
    fake_ai.add("anthropic", anthropic_message("from anthropic"))
    resp = complete()
    body = resp.json()
    assert (resp.status_code, body["provider"]) == (200, "anthropic"), body
    assert [(f["provider"], f["model"], f["http_status"]) for f in body["fallbacks"]] == [
        ("github_models", "openai/gpt-4.1-mini", 410)
    ]
    assert len(fake_ai.to("github_models")) == 1


def test_after_a_404_for_one_model_the_walk_asks_that_providers_next_model(fake_ai, complete, settings):
    """A 404 names one model the provider does not serve (a retired one): its next model on the route may answer."""
    settings.AI_ROUTES = {
        "simple": [["openai", "gpt-4o-mini"], ["openai", "gpt-4.1"], ["anthropic", "claude-haiku-4-5"]]
    }
    fake_ai.add("openai", GONE[1][2]())
    fake_ai.add("openai", openai_chat("from gpt-4.1", model="gpt-4.1"))
    resp = complete()
    body = resp.json()
    assert (resp.status_code, body["provider"], body["model"]) == (200, "openai", "gpt-4.1"), body
    assert [(f["model"], f["http_status"]) for f in body["fallbacks"]] == [("gpt-4o-mini", 404)]
    assert fake_ai.to("anthropic") == []
