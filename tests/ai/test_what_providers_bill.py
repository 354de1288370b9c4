"""An answer is booked at what its provider bills for it: the provider's own figure when it gives one, else the
price table's rates for the kinds of tokens it counted."""

from decimal import Decimal

import pytest

from ai.models import AiRequest, AiSpend, AiUsageMonthly
from integrations.models import ProviderCall
from tests.ai.fakes import openai_chat, openai_sse_chunks, parse_sse, sse_response

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
