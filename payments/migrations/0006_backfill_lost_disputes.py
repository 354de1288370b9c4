import re

from django.db import migrations
from django.db.models import F

LOST = "lost"
# The events payments.webhooks applies to disputes: named, so the read uses the (provider, type) index.
DISPUTE_EVENTS = [
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "charge.dispute.closed",
]
# The lost dispute's staff alert, as payments.services.settlement has written it since 0004 (Stripe's amount and
# currency, from the event that said lost): "Stripe dispute du_... on invoice ... was lost: 2500 USD (minor units)
# went back to the cardholder ...". Alerts are kept when retention has emptied the event's payload.
ALERT_AMOUNT = re.compile(r" was lost: (\d+) ([A-Z]{3}) \(minor units\) went back to the cardholder")


def charge_back_lost_disputes(apps, schema_editor):
    """A dispute lost before 0005 kept no amount (dispute_amount 0), so its invoice still shows paid. Where the hub
    still holds Stripe's word for that amount (the newest stored charge.dispute.* event saying lost, else the lost
    dispute's alert), it is recorded and the invoice charged back as it would be now; without it nothing changes
    (the next event Stripe sends for that dispute does it). Nothing asks Stripe: a migration calls no provider."""
    Payment = apps.get_model("payments", "Payment")
    invoices = set()
    for payment in Payment.objects.filter(status="succeeded", dispute_status=LOST, dispute_amount=0).exclude(
        dispute_id=""
    ):
        amount = _amount_from_events(apps, payment) or _amount_from_alert(apps, payment)
        if amount:
            Payment.objects.filter(pk=payment.pk).update(dispute_amount=amount)
            invoices.add(payment.invoice_id)
    for invoice_id in sorted(invoices):
        _charge_back(apps, invoice_id)


def _amount_from_events(apps, payment):
    WebhookEvent = apps.get_model("integrations", "WebhookEvent")
    events = WebhookEvent.objects.filter(
        provider="stripe",
        type__in=DISPUTE_EVENTS,
        payload__data__object__id=payment.dispute_id,
        payload__data__object__status=LOST,
    ).order_by(F("occurred_at").desc(nulls_last=True), "-received_at")
    for payload in events.values_list("payload", flat=True):
        dispute = payload["data"]["object"]
        amount = dispute.get("amount")
        if str(dispute.get("currency") or "").lower() == payment.currency.lower() and _positive(amount):
            return amount
    return 0


def _amount_from_alert(apps, payment):
    Alert = apps.get_model("integrations", "Alert")
    for message in Alert.objects.filter(kind="dispute", dedupe_key=f"dispute:{payment.dispute_id}:lost").values_list(
        "message", flat=True
    ):
        found = ALERT_AMOUNT.search(message)
        if found and found[2].lower() == payment.currency.lower() and int(found[1]) > 0:
            return int(found[1])
    return 0


def _positive(amount):
    return isinstance(amount, int) and not isinstance(amount, bool) and amount > 0


def _charge_back(apps, invoice_id):
    """What payments.services.settlement.charged_back_totals does (a migration cannot import it: it will change)."""
    Invoice = apps.get_model("payments", "Invoice")
    Payment = apps.get_model("payments", "Payment")
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    held = lost = 0
    for row in Payment.objects.filter(invoice_id=invoice_id, status="succeeded").values(
        "amount", "amount_refunded", "dispute_status", "dispute_amount"
    ):
        kept = max(0, row["amount"] - row["amount_refunded"])
        held += kept
        if row["dispute_status"] == LOST:
            lost += min(row["dispute_amount"], kept)
    owed = max(0, invoice.amount - invoice.amount_refunded)
    taken = min(lost, owed, max(0, owed - (held - lost)))
    if taken:
        Invoice.objects.filter(pk=invoice_id, status__in=["paid", "partially_refunded"]).update(
            status="charged_back", amount_charged_back=taken
        )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0005_invoice_charged_back"),
        ("integrations", "0024_plural_names"),
    ]

    operations = [
        migrations.RunPython(charge_back_lost_disputes, migrations.RunPython.noop),
    ]
