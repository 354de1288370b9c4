"""Every state machine refuses every move it does not list, and leaves the row alone."""

import pytest

from payments.models import Invoice, Payment, Refund, Subscription
from payments.states import IllegalTransition, transition

from .factories import InvoiceFactory, PaymentFactory, RefundFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

FACTORIES = {Invoice: InvoiceFactory, Payment: PaymentFactory, Refund: RefundFactory, Subscription: SubscriptionFactory}


def _illegal(model):
    states = list(model.TRANSITIONS)
    return [
        pytest.param(model, frm, to, id=f"{model.__name__}-{frm}-to-{to}")
        for frm in states
        for to in states
        if to != frm and to not in model.TRANSITIONS[frm]
    ]


def _legal(model):
    return [
        pytest.param(model, frm, to, id=f"{model.__name__}-{frm}-to-{to}")
        for frm, targets in model.TRANSITIONS.items()
        for to in sorted(targets)
    ]


ILLEGAL = [p for m in FACTORIES for p in _illegal(m)]
LEGAL = [p for m in FACTORIES for p in _legal(m)]


@pytest.mark.parametrize("model,frm,to", ILLEGAL)
def test_an_illegal_transition_is_refused_and_changes_nothing(model, frm, to):
    row = FACTORIES[model](status=frm)
    with pytest.raises(IllegalTransition):
        transition(model, row.pk, to, strict=True)
    assert transition(model, row.pk, to) is False  # webhooks and reconciliation: a quiet no-op
    row.refresh_from_db()
    assert row.status == frm


@pytest.mark.parametrize("model,frm,to", LEGAL)
def test_a_listed_transition_is_applied(model, frm, to):
    row = FACTORIES[model](status=frm)
    assert transition(model, row.pk, to, strict=True) is True
    row.refresh_from_db()
    assert row.status == to


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
