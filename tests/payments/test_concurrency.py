"""Races that only a real database can show: row locks keep money and attempts right."""

import threading

import pytest
from django.db import connection

from payments import services
from payments.models import Payment, Refund

from .factories import InvoiceFactory, SucceededPaymentFactory
from .test_pay import PI_URL, stripe_customer, stripe_intent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(n, fn):
    barrier = threading.Barrier(n)
    results = []

    def run():
        try:
            barrier.wait()
            results.append(fn())
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_refunds_racing_cannot_together_exceed_the_payment(http):
    payment = SucceededPaymentFactory(invoice__amount=1000, payment_intent_id="pi_race")
    results = _race(2, lambda: services.refund_request(payment_id=payment.pk, amount=600))
    assert sorted(type(r).__name__ for r in results) == ["Refund", "RefundTooLarge"]
    assert list(Refund.objects.values_list("amount", flat=True)) == [600]


def test_simultaneous_pay_clicks_share_one_attempt_and_one_idempotency_key(user, http):
    invoice = InvoiceFactory(owner=user)
    stripe_customer(http)
    stripe_intent(http)
    results = _race(4, lambda: services.invoice_pay(invoice_id=invoice.pk, owner=user)[1]["client_secret"])
    assert len(set(results)) == 1 and isinstance(results[0], str)
    assert Payment.objects.count() == 1
    keys = {c.request.headers["Idempotency-Key"] for c in http.calls if c.request.url == PI_URL}
    assert keys == {f"hub-invoice-{invoice.pk}-attempt-1"}
