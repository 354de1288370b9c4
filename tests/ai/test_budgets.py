from decimal import Decimal

import pytest

from ai.models import AiBudget
from ai.usage import usage_record
from integrations.models import Alert
from tests.ai.fakes import anthropic_message, openai_chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def dear_openai(settings):
    """gpt-4o-mini at $1000 per 1M input tokens: 1000 input tokens cost $1."""
    settings.AI_MODEL_PRICES = {**settings.AI_MODEL_PRICES, "openai": {"gpt-4o-mini": {"input": "1000", "output": "0"}}}


def test_crossing_80_percent_of_the_budget_raises_one_alert(fake_ai, complete, user, dear_openai):
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("10"))
    usage_record(owner_id=user.pk, provider="openai", model="gpt-4o-mini", cost_usd=Decimal("7.5"))
    fake_ai.add("openai", openai_chat("a", usage=(1000, 1, 0)), openai_chat("b", usage=(100, 1, 0)))
    assert complete().status_code == 200  # 7.5 -> 8.5
    assert complete().status_code == 200  # 8.5 -> 8.6: no second alert
    alert = Alert.objects.get()
    assert (alert.kind, alert.severity, alert.occurrences) == ("budget_threshold", "warning", 1)
    assert f"user {user.pk}" in alert.message and "80 %" in alert.message


def test_a_spent_budget_answers_402_without_calling_a_provider(fake_ai, complete, user, settings):
    settings.AI_USER_MONTHLY_BUDGET_USD = "5.00"
    usage_record(owner_id=user.pk, provider="anthropic", model="claude-sonnet-4-6", cost_usd=Decimal("5.00"))
    resp = complete()
    assert resp.status_code == 402
    body = resp.json()
    assert (body["error"], body["limit_usd"], body["spent_usd"]) == ("budget_exceeded", "5.00", "5.000000")
    assert fake_ai.sent == []


def test_the_request_that_reaches_100_percent_raises_a_critical_alert_and_the_next_is_refused(
    fake_ai, complete, user, dear_openai, settings
):
    settings.AI_USER_MONTHLY_BUDGET_USD = "1.00"
    fake_ai.add("openai", openai_chat("pricey", usage=(1500, 1, 0)))
    assert complete().status_code == 200
    assert Alert.objects.get().severity == "critical"
    assert complete().status_code == 402


def test_a_per_user_override_in_admin_wins_over_the_default(fake_ai, complete, user, settings):
    settings.AI_USER_MONTHLY_BUDGET_USD = "1.00"
    usage_record(owner_id=user.pk, provider="openai", model="gpt-4o-mini", cost_usd=Decimal("2"))
    assert complete().status_code == 402
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("50"))
    fake_ai.add("openai", openai_chat("ok"))
    assert complete().status_code == 200


def test_a_lowered_or_removed_override_applies_to_the_very_next_request(fake_ai, complete, user, settings):
    settings.AI_USER_MONTHLY_BUDGET_USD = "1.00"
    usage_record(owner_id=user.pk, provider="openai", model="gpt-4o-mini", cost_usd=Decimal("2"))
    budget = AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("50"))
    fake_ai.add("openai", openai_chat("ok"), openai_chat("again"))
    assert complete().status_code == 200  # the override is now cached
    budget.monthly_limit_usd = Decimal("2.00")
    budget.save()
    assert complete().status_code == 402
    budget.monthly_limit_usd = Decimal("50")
    budget.save()
    assert complete().status_code == 200
    budget.delete()
    assert complete().status_code == 402  # back to the default of $1


def test_usage_sums_this_months_tokens_and_cost_by_provider_and_model(
    fake_ai, complete, user_client, user, other_user, settings
):
    settings.AI_USER_MONTHLY_BUDGET_USD = "10.00"
    fake_ai.add("openai", openai_chat("a", usage=(1000, 100, 200)), openai_chat("b", usage=(3000, 300, 0)))
    fake_ai.add("anthropic", anthropic_message("c", usage=(50, 5, 0)))
    complete()
    complete()
    complete(task="writing")
    usage_record(
        owner_id=other_user.pk, provider="openai", model="gpt-4o-mini", input_tokens=999, cost_usd=Decimal("3")
    )
    body = user_client.get("/api/v1/ai/usage/").json()
    assert (body["requests"], body["input_tokens"], body["output_tokens"], body["cached_tokens"]) == (3, 4050, 405, 200)
    by_model = {(r["provider"], r["model"]): r for r in body["by_model"]}
    assert set(by_model) == {("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5-20251001")}
    mini = by_model[("openai", "gpt-4o-mini")]
    assert (mini["requests"], mini["input_tokens"], mini["output_tokens"]) == (2, 4000, 400)
    # (800 x 0.15 + 200 x 0.075 + 100 x 0.60 + 3000 x 0.15 + 300 x 0.60) / 1M
    assert Decimal(mini["cost_usd"]) == Decimal("0.000825")
    spent = Decimal(body["spent_usd"])
    assert spent == sum(Decimal(r["cost_usd"]) for r in body["by_model"])
    assert (body["budget_usd"], Decimal(body["remaining_usd"])) == ("10.00", Decimal("10") - spent)


def test_users_are_rate_limited_with_json_429(fake_ai, complete, settings, still_clock):
    settings.AI_USER_RATE = "2/m"
    fake_ai.add("openai", openai_chat("a"), openai_chat("b"))
    assert complete().status_code == 200
    assert complete().status_code == 200
    resp = complete()
    assert resp.status_code == 429
    assert resp.json()["error"] == "rate_limited" and int(resp["Retry-After"]) >= 1
    assert len(fake_ai.sent) == 2


def test_a_providers_tokens_per_minute_bucket_sends_the_overflow_to_the_next_provider(fake_ai, complete, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "openai": {"tokens": {"rate": 1, "burst": 2000}}}
    fake_ai.add("openai", openai_chat("first"))
    fake_ai.add("anthropic", anthropic_message("overflow"))
    assert complete(max_tokens=1500).json()["provider"] == "openai"
    body = complete(max_tokens=1500).json()
    assert body["provider"] == "anthropic"
    assert body["fallbacks"][0]["error"] == "rate_limited_outbound"
    assert len(fake_ai.to("openai")) == 1


def test_the_monthly_row_is_created_by_the_first_request_and_added_to_by_the_next(user):
    """usage_record: one row per user, month, provider and model; every column adds up (one upsert on PostgreSQL)."""
    from ai.models import AiUsageMonthly

    for model, amounts in [
        (
            "gpt-4o-mini",
            {
                "input_tokens": 120,
                "output_tokens": 30,
                "cached_tokens": 100,
                "cache_write_tokens": 15,
                "cost_usd": Decimal("0.000125"),
            },
        ),
        ("gpt-4o-mini", {"cached": True}),
        ("gpt-4o-mini", {"input_tokens": 5, "output_tokens": 7, "cache_write_tokens": 4, "cost_usd": Decimal("0.5")}),
    ]:
        usage_record(owner_id=user.pk, provider="openai", model=model, **amounts)
    usage_record(owner_id=user.pk, provider="openai", model="gpt-4o", input_tokens=1)
    row = AiUsageMonthly.objects.get(owner=user, provider="openai", model="gpt-4o-mini")
    assert (row.requests, row.cached_requests, row.input_tokens, row.output_tokens, row.cached_tokens) == (
        3,
        1,
        125,
        37,
        100,
    )
    assert (row.cache_write_tokens, row.cost_usd) == (19, Decimal("0.500125"))
    assert AiUsageMonthly.objects.filter(owner=user).count() == 2
