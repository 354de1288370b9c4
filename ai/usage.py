"""Prices, the monthly roll-up, and per-user budgets for AI completions."""

import logging
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from integrations.alerts import alert_raise
from integrations.errors import DomainError
from integrations.models import Alert

from .models import AiBudget, AiUsageMonthly

logger = logging.getLogger(__name__)

_MILLION = Decimal(1_000_000)


def price(provider, model, *, input_tokens, output_tokens, cached_tokens):
    """USD for one answer from the AI_MODEL_PRICES table (per 1M tokens)."""
    table = settings.AI_MODEL_PRICES.get(provider, {})
    entry = table.get(model) or table.get("*")
    if entry is None:
        logger.warning("no AI price for model", extra={"provider": provider, "model": model})
        return Decimal(0)
    cached = min(cached_tokens, input_tokens)
    input_price = Decimal(str(entry.get("input", 0)))
    cached_price = Decimal(str(entry.get("cached_input", entry.get("input", 0))))
    output_price = Decimal(str(entry.get("output", 0)))
    cost = ((input_tokens - cached) * input_price + cached * cached_price + output_tokens * output_price) / _MILLION
    return cost.quantize(Decimal("0.000001"))


def month_of(now=None):
    now = now or timezone.now()
    return now.date().replace(day=1)


def usage_record(
    *, owner_id, provider, model, input_tokens=0, output_tokens=0, cached_tokens=0, cost_usd=0, cached=False, now=None
):
    """Add one request to its monthly row: one UPDATE, an INSERT only for the month's first."""
    month = month_of(now)
    changes = {
        "requests": F("requests") + 1,
        "cached_requests": F("cached_requests") + (1 if cached else 0),
        "input_tokens": F("input_tokens") + input_tokens,
        "output_tokens": F("output_tokens") + output_tokens,
        "cached_tokens": F("cached_tokens") + cached_tokens,
        "cost_usd": F("cost_usd") + Decimal(cost_usd),
    }
    rows = AiUsageMonthly.objects.filter(owner_id=owner_id, month=month, provider=provider, model=model[:128])
    if rows.update(**changes):
        return
    try:
        with transaction.atomic():
            AiUsageMonthly.objects.create(
                owner_id=owner_id,
                month=month,
                provider=provider,
                model=model[:128],
                requests=1,
                cached_requests=1 if cached else 0,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_tokens=cached_tokens,
                cost_usd=Decimal(cost_usd),
            )
    except IntegrityError:
        rows.update(**changes)  # another request created the month's row first


def month_spent(owner_id, now=None):
    spent = AiUsageMonthly.objects.filter(owner_id=owner_id, month=month_of(now)).aggregate(s=Sum("cost_usd"))["s"]
    return spent or Decimal(0)


def budget_limit(owner_id):
    override = AiBudget.objects.filter(owner_id=owner_id).values_list("monthly_limit_usd", flat=True).first()
    return Decimal(override) if override is not None else Decimal(settings.AI_USER_MONTHLY_BUDGET_USD)


def budget_guard(owner_id):
    """Refuse a completion once this month's spend has reached the user's budget."""
    limit = budget_limit(owner_id)
    spent = month_spent(owner_id)
    if spent >= limit:
        raise DomainError(
            402,
            "budget_exceeded",
            f"Your AI budget of ${limit:.2f} for this month is used up (${spent:.2f} spent); "
            "it renews on the first of next month, or ask an administrator to raise it.",
            limit_usd=str(limit),
            spent_usd=str(spent.quantize(Decimal("0.000001"))),
        )
    return limit, spent


def budget_after(owner_id, *, limit, before, cost, now=None):
    """Alert when this request's cost carried the user's spend over the alert threshold or the budget."""
    if cost <= 0 or limit <= 0:
        return
    now = now or timezone.now()
    after = before + cost
    for pct, severity in ((100, Alert.Severity.CRITICAL), (settings.AI_BUDGET_ALERT_PERCENT, Alert.Severity.WARNING)):
        threshold = limit * pct / 100
        if before < threshold <= after:
            alert_raise(
                kind=Alert.Kind.BUDGET_THRESHOLD,
                severity=severity,
                message=f"AI spend for user {owner_id} is ${after:.4f} of ${limit:.2f} ({pct} % threshold) in {now:%Y-%m}.",
                dedupe_key=f"ai_budget:{owner_id}:{now:%Y-%m}:{pct}",
            )
            return


def usage_for_user(*, owner, now=None):
    """This month's AI tokens and cost for one user, by provider and model (from the roll-up)."""
    month = month_of(now)
    rows = list(
        AiUsageMonthly.objects.filter(owner=owner, month=month)
        .order_by("provider", "model")
        .values(
            "provider",
            "model",
            "requests",
            "cached_requests",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "cost_usd",
        )
    )
    total = sum((r["cost_usd"] for r in rows), Decimal(0))
    limit = budget_limit(owner.pk)
    return {
        "month": f"{month:%Y-%m}",
        "budget_usd": limit,
        "spent_usd": total,
        "remaining_usd": max(Decimal(0), limit - total),
        "input_tokens": sum(r["input_tokens"] for r in rows),
        "output_tokens": sum(r["output_tokens"] for r in rows),
        "cached_tokens": sum(r["cached_tokens"] for r in rows),
        "requests": sum(r["requests"] for r in rows),
        "by_model": rows,
    }
