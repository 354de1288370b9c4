"""The hourly reconcile_stripe beat task skips quietly when Stripe is not configured, and says it skipped.

On a fresh `make run` no Stripe key is set, yet beat sends payments.reconcile_stripe every hour: the task
failed with ProviderNotConfigured, logged a traceback and raised a task_failed alert each time. A skip must
not pass for a reconciliation either: no ReconciliationRun row, and a result that says `skipped`.
"""

import logging

import pytest

from integrations.models import Alert, ProviderCall
from payments.models import ReconciliationRun
from payments.tasks import reconcile_stripe

from . import stripe_fakes as fakes
from .factories import InvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def test_without_a_stripe_key_the_task_skips_with_a_clear_status_and_no_error(settings, caplog):
    settings.STRIPE_SECRET_KEY = ""
    with caplog.at_level(logging.DEBUG):
        result = reconcile_stripe.apply(kwargs={"hours": 24})
    assert result.successful(), result.traceback
    assert result.result == {"status": "skipped", "reason": "provider_not_configured", "missing": ["STRIPE_SECRET_KEY"]}
    assert not ReconciliationRun.objects.exists()
    assert not Alert.objects.exists()
    assert not ProviderCall.objects.exists()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    [skipped] = [r for r in caplog.records if r.name == "payments.tasks"]
    assert skipped.levelno == logging.INFO and "STRIPE_SECRET_KEY" in skipped.getMessage()


def test_with_stripe_configured_the_task_still_reconciles(http):
    missed = PaymentFactory(invoice=InvoiceFactory(amount=2500), payment_intent_id="pi_missed")
    http.get(
        f"{fakes.API}/v1/payment_intents",
        json=fakes.stripe_list([fakes.intent(missed, status="succeeded")], url="/v1/payment_intents"),
    )
    http.get(f"{fakes.API}/v1/refunds", json=fakes.stripe_list([], url="/v1/refunds"))
    http.get(
        f"{fakes.API}/v1/payment_intents/pi_missed",
        json={"id": "pi_missed", "object": "payment_intent", "latest_charge": None},
    )
    result = reconcile_stripe.apply(kwargs={"hours": 24})
    assert result.successful(), result.traceback
    assert result.result == {"status": "ok", "checked": 1, "fixed": 1}
    missed.refresh_from_db()
    assert missed.status == "succeeded"
    assert ReconciliationRun.objects.get().fixed == 1
