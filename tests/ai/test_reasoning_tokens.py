"""Reasoning tokens that xAI and Gemini count outside completion_tokens are output all the same: billed, booked."""

from decimal import Decimal

import pytest

from ai.models import AiRequest, AiUsageMonthly
from integrations.models import ProviderCall
from tests.ai.fakes import openai_chat, openai_sse_chunks, parse_sse, sse_response

pytestmark = pytest.mark.django_db


def test_xai_reasoning_tokens_outside_completion_tokens_are_booked_as_output(fake_ai, complete):
    # grok-3-mini: 100 in, 50 answer tokens, 250 reasoning tokens in total_tokens only; both billed as output.
    fake_ai.add("xai", openai_chat("42", model="grok-3-mini", usage=(100, 50, 0), reasoning_apart=250))
    resp = complete(model="grok-3-mini", provider="xai")
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["usage"] == {"input_tokens": 100, "output_tokens": 300, "cached_tokens": 0, "cache_write_tokens": 0}
    assert body["cost_usd"] == "0.000180"  # (100 x 0.30 + 300 x 0.50) / 1M
    assert ProviderCall.objects.get().cost_usd == Decimal("0.000180")
    assert AiUsageMonthly.objects.get().output_tokens == 300


def test_a_gemini_streams_thinking_tokens_are_booked_as_output(fake_ai, complete):
    chunks = openai_sse_chunks(["Hi"], model="gemini-2.5-pro", usage=(1000, 10, 0), reasoning_apart=990)
    fake_ai.add("gemini", sse_response(chunks))
    resp = complete(model="gemini-2.5-pro", provider="gemini", stream=True)
    kind, done = parse_sse(resp.raw)[-1]
    assert kind == "done", done
    assert done["usage"]["output_tokens"] == 1000
    assert done["cost_usd"] == "0.011250"  # (1000 x 1.25 + 1000 x 10.00) / 1M
    assert AiRequest.objects.get().output_tokens == 1000


def test_openai_reasoning_tokens_inside_completion_tokens_are_not_counted_twice(fake_ai, complete):
    fake_ai.add("openai", openai_chat("ok", usage=(100, 300, 0)))
    assert complete().json()["usage"]["output_tokens"] == 300
