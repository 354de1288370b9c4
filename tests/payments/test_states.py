"""Payments-specific state rules; the generated matrix for every machine is tests/contracts/test_state_machines.py."""

import pytest
from django.db import connection

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


def test_a_stale_guess_with_a_condition_is_decided_on_a_fresh_read(django_assert_num_queries):
    """`seen` is only a first guess, also with `where`: an invoice that failed since it was read is still paid."""
    from django.db.models import Q

    from .factories import InvoiceFactory

    invoice = InvoiceFactory(status="failed")
    payable = Q(status__in=Invoice.PAYABLE)
    assert transition(Invoice, invoice.pk, "paid", where=payable, seen="open") is True
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    # A guess that still holds costs the one UPDATE; a fresh state the condition refuses moves nothing.
    fresh = InvoiceFactory(status="open")
    with django_assert_num_queries(1):
        assert transition(Invoice, fresh.pk, "paid", where=payable, seen="open") is True
    refunded = InvoiceFactory(status="refunded")
    assert transition(Invoice, refunded.pk, "paid", where=payable, seen="open") is False
    refunded.refresh_from_db()
    assert refunded.status == "refunded"


def test_each_move_writes_its_own_row_and_values():
    """The UPDATE of a move is built once per process (integrations.compiled_sql); every call fills in its own."""
    import datetime as dt

    first, second = PaymentFactory(status="pending"), PaymentFactory(status="processing")
    at = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert transition(Payment, first.pk, "failed", occurred_at=at, seen="pending", failure_code="card_declined")
    later = at + dt.timedelta(seconds=9)
    assert transition(Payment, second.pk, "failed", occurred_at=later, seen="processing", failure_code="expired_card")
    rows = {p.pk: p for p in Payment.objects.filter(pk__in=[first.pk, second.pk])}
    assert (rows[first.pk].status, rows[first.pk].failure_code, rows[first.pk].last_event_at) == (
        "failed",
        "card_declined",
        at,
    )
    assert (rows[second.pk].status, rows[second.pk].failure_code, rows[second.pk].last_event_at) == (
        "failed",
        "expired_card",
        later,
    )


@pytest.mark.postgres
def test_a_moves_values_go_to_postgresql_beside_its_statement_not_quoted_into_it():
    """Django's cursor quotes every value into the SQL text in Python: ~7 us of a move's ~110 (issue 11, a drained
    event makes two). Sent as parameters they are dumped by psycopg's C code, and nothing is prepared (pgbouncer)."""
    import psycopg

    cursors = []

    def watch(execute, sql, params, many, context):
        cursors.append(context["cursor"].cursor)
        return execute(sql, params, many, context)

    payment = PaymentFactory(status="pending")
    with connection.execute_wrapper(watch):
        assert transition(Payment, payment.pk, "failed", seen="pending", failure_code="card_declined")
    (cursor,) = cursors
    assert not isinstance(cursor, psycopg.ClientCursor) and b"$1" in cursor._query.query
    assert Payment.objects.values_list("status", "failure_code").get(pk=payment.pk) == ("failed", "card_declined")
