"""What messages and calls cost: Twilio's billed price, booked once on the fetch's ProviderCall."""

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from integrations.gateway import price_estimate as _gateway_price
from integrations.task_base import enqueue_on_commit

from ..models import CallLog, SmsMessage


def price_estimate(operation, **units):
    """What the price table says `units` cost, until Twilio reports the billed price."""
    return _gateway_price("twilio", operation, units)


def price_record(model, pk, *, fetch, units, estimate, final_try, stored):
    """Fetch Twilio's billed price for a message or call and book it, once, on the fetch's ProviderCall.

    fetch(row, cost) makes the call; units(row, result) are what it is billed
    for; estimate(row, result, units) is the price table's figure, booked on
    the final try when Twilio has still not priced it, so nothing goes
    uncosted; stored(row, result) are the fields kept once it is priced.
    Returns "pending" while Twilio has not priced it.
    """
    row = model.objects.filter(pk=pk).first()
    if row is None or not row.external_id or row.cost_recorded:
        return "skipped"

    def cost(result):
        billed = units(row, result)
        amount = result.price_usd
        if amount is None and final_try:
            amount = estimate(row, result, billed)
        if amount is None:
            return {}, Decimal(0)
        # Claim the booking in the same step, so two fetches (sent, then delivered) never book twice.
        claimed = model.objects.filter(pk=pk, cost_recorded=False).update(cost_recorded=True)
        return (billed, amount) if claimed else ({}, Decimal(0))

    result = fetch(row, cost)
    if result.price_usd is None:
        return "estimated" if final_try else "pending"
    model.objects.filter(pk=pk).update(price_usd=result.price_usd, price_final=True, **stored(row, result))
    return "priced"


def costs_unbooked_sweep(*, older_than_seconds=3600, limit=500):
    """Messages and calls Twilio accepted whose cost was never booked (no status callback came):
    fetch their price now. Booking is claimed once per row, so a repeat sweep cannot double it."""
    from ..tasks import call_price_fetch, sms_price_fetch

    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    sms_ids = list(
        SmsMessage.objects.filter(
            direction=SmsMessage.Direction.OUTBOUND, cost_recorded=False, updated_at__lt=cutoff, external_id__gt=""
        )
        .exclude(status__in=[SmsMessage.Status.QUEUED, SmsMessage.Status.FAILED])
        .values_list("pk", flat=True)[:limit]
    )
    call_ids = list(
        CallLog.objects.filter(
            cost_recorded=False, updated_at__lt=cutoff, status__in=CallLog.FINAL, external_id__gt=""
        ).values_list("pk", flat=True)[:limit]
    )
    for pk in sms_ids:
        enqueue_on_commit(sms_price_fetch, pk)
    for pk in call_ids:
        enqueue_on_commit(call_price_fetch, pk)
    return {"sms": len(sms_ids), "calls": len(call_ids)}
