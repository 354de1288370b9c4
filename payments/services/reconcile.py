"""Reconciliation: list recent Stripe objects and repair what a missed webhook left behind."""

import datetime as dt
import logging

from django.utils import timezone

from integrations.registry import require

from ..models import ReconciliationRun, Refund
from ..providers import stripe as stripe_api
from .refunds import refund_upsert
from .settlement import payment_apply_intent, payment_for_intent

logger = logging.getLogger(__name__)


def _pages(list_fn, *, created_gte, max_pages):
    after = None
    for _ in range(max_pages):
        page = list_fn(created_gte=created_gte, starting_after=after)
        yield from page.items
        if not page.has_more or not page.items:
            return
        after = page.items[-1].id


def reconcile_stripe(*, hours=72, max_pages=50):
    """List recent PaymentIntents and refunds on Stripe and repair local state a missed webhook left behind."""
    require(stripe_api.PROVIDER)
    since = timezone.now() - dt.timedelta(hours=hours)
    run = ReconciliationRun.objects.create(since=since)
    fixes, checked = [], 0
    try:
        for intent in _pages(stripe_api.payment_intent_list, created_gte=since.timestamp(), max_pages=max_pages):
            checked += 1
            before = payment_for_intent(intent)
            if before is None:
                continue
            old = before.status
            payment, changed = payment_apply_intent(intent=intent)
            if changed:
                payment.refresh_from_db()
                fixes.append({"payment": payment.pk, "intent": intent.id, "from": old, "to": payment.status})
        for stripe_refund in _pages(stripe_api.refund_list, created_gte=since.timestamp(), max_pages=max_pages):
            checked += 1
            old = Refund.objects.filter(external_id=stripe_refund.id).values_list("status", flat=True).first()
            refund, changed = refund_upsert(stripe_refund=stripe_refund)
            if changed:
                refund.refresh_from_db()
                fixes.append({"refund": refund.pk, "stripe_refund": stripe_refund.id, "from": old, "to": refund.status})
    except Exception as exc:
        ReconciliationRun.objects.filter(pk=run.pk).update(
            finished_at=timezone.now(), checked=checked, fixed=len(fixes), fixes=fixes, error=str(exc)[:2000]
        )
        raise
    ReconciliationRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(), checked=checked, fixed=len(fixes), fixes=fixes
    )
    run.refresh_from_db()
    if fixes:
        logger.warning("stripe reconciliation repaired local state", extra={"fixed": len(fixes)})
    return run
