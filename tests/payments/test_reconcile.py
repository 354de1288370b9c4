"""Reconciliation repairs what a missed webhook left behind, and records what it fixed."""

from io import StringIO

import pytest
from django.core.management import call_command

from payments.models import ReconciliationRun, Refund

from . import stripe_fakes as fakes
from .factories import InvoiceFactory, PaymentFactory, SucceededPaymentFactory

pytestmark = pytest.mark.django_db

PI_LIST = f"{fakes.API}/v1/payment_intents"
REFUND_LIST = f"{fakes.API}/v1/refunds"


def test_a_missed_succeeded_webhook_is_repaired_by_reconcile_stripe(http, run_on_commit):
    missed = PaymentFactory(invoice=InvoiceFactory(amount=2500), payment_intent_id="pi_missed")
    in_step = PaymentFactory(invoice=InvoiceFactory(), payment_intent_id="pi_fine")
    paid = SucceededPaymentFactory(invoice__amount=1000, payment_intent_id="pi_paid")
    http.get(
        PI_LIST,
        json=fakes.stripe_list([fakes.intent(missed, status="succeeded")], url="/v1/payment_intents", has_more=True),
    )
    http.get(PI_LIST, json=fakes.stripe_list([fakes.intent(in_step)], url="/v1/payment_intents"))
    http.get(
        REFUND_LIST,
        json=fakes.stripe_list([fakes.refund("re_missed", amount=1000, payment_intent="pi_paid")], url="/v1/refunds"),
    )
    http.get(f"{PI_LIST}/pi_missed", json={"id": "pi_missed", "object": "payment_intent", "latest_charge": None})
    out = StringIO()
    with run_on_commit():
        call_command("reconcile_stripe", "--hours", "24", stdout=out)
    missed.refresh_from_db()
    missed.invoice.refresh_from_db()
    in_step.refresh_from_db()
    assert (missed.status, missed.invoice.status) == ("succeeded", "paid")
    assert in_step.status == "pending"
    paid.invoice.refresh_from_db()
    assert paid.invoice.status == "refunded" and Refund.objects.get().external_id == "re_missed"
    run = ReconciliationRun.objects.get()
    assert (run.checked, run.fixed) == (3, 2) and run.finished_at is not None
    assert {"payment": missed.pk, "intent": "pi_missed", "from": "pending", "to": "succeeded"} in run.fixes
    assert "fixed 2" in out.getvalue()
    # Paging: the second list request starts after the last id of the first page.
    assert "starting_after=pi_missed" in http.calls[1].request.url


def test_reconciliation_never_takes_a_paid_invoice_back(http, run_on_commit):
    paid = SucceededPaymentFactory(payment_intent_id="pi_done")
    http.get(
        PI_LIST,
        json=fakes.stripe_list(
            [fakes.intent(paid, status="requires_payment_method", error=fakes.decline_error())],
            url="/v1/payment_intents",
        ),
    )
    http.get(REFUND_LIST, json=fakes.stripe_list([], url="/v1/refunds"))
    with run_on_commit():
        call_command("reconcile_stripe", stdout=StringIO())
    paid.refresh_from_db()
    assert paid.status == "succeeded" and ReconciliationRun.objects.get().fixed == 0


def test_the_beat_task_is_scheduled_and_runs_through_the_gateway(http, settings):
    from payments.tasks import reconcile_stripe

    assert settings.CELERY_BEAT_SCHEDULE["payments.reconcile_stripe"]["task"] == "payments.reconcile_stripe"
    http.get(PI_LIST, json=fakes.stripe_list([], url="/v1/payment_intents"))
    http.get(REFUND_LIST, json=fakes.stripe_list([], url="/v1/refunds"))
    assert reconcile_stripe.apply(kwargs={"hours": 1}).get() == {"status": "ok", "checked": 0, "fixed": 0}
    from integrations.models import ProviderCall

    assert set(ProviderCall.objects.values_list("operation", flat=True)) == {"payment_intent.list", "refund.list"}


def test_the_command_fails_clearly_when_stripe_is_not_configured(settings):
    from django.core.management.base import CommandError

    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY"):
        call_command("reconcile_stripe", stdout=StringIO())
