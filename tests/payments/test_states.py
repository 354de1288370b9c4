"""Payments-specific state rules; the generated matrix for every machine is tests/contracts/test_state_machines.py."""

import pytest

from integrations.states import transition
from payments.models import Invoice, Payment

from .factories import PaymentFactory

pytestmark = pytest.mark.django_db


def test_a_paid_invoice_never_goes_back_to_failed_or_open():
    assert "failed" not in Invoice.TRANSITIONS["paid"] and "open" not in Invoice.TRANSITIONS["paid"]


def test_an_event_older_than_the_last_applied_one_is_stale():
    import datetime as dt

    payment = PaymentFactory(status="failed")
    newer = dt.datetime(2026, 1, 1, 12, 0, 5, tzinfo=dt.UTC)
    older = newer - dt.timedelta(seconds=5)
    assert transition(Payment, payment.pk, "processing", occurred_at=newer)
    # A failure that happened before the retry began arrives late: processing -> failed is legal, but stale.
    assert transition(Payment, payment.pk, "failed", occurred_at=older) is False
    payment.refresh_from_db()
    assert (payment.status, payment.last_event_at) == ("processing", newer)
