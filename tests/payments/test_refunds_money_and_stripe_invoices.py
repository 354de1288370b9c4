"""Refund totals follow what the invoice still holds; amounts in the currency's units; Stripe-issued invoices are Stripe's to collect."""

import pytest
from django.core import mail

from payments import services

from .factories import InvoiceFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (5000, "jpy", "5,000 JPY"),  # zero-decimal: 5000 is ¥5,000, not "50.00 JPY"
        (12340, "kwd", "12.340 KWD"),  # three-decimal: 12.340 KWD, not "123.40 KWD"
        (2500, "usd", "25.00 USD"),
    ],
)
def test_the_payment_failed_email_states_the_amount_in_the_invoices_currency(user, amount, currency, shown):
    invoice = InvoiceFactory(owner=user, amount=amount, currency=currency)
    assert services.payment_failed_notify(invoice_id=invoice.pk, reason="card declined")
    assert len(mail.outbox) == 1
    assert f"Your payment of {shown} for invoice" in mail.outbox[0].body, mail.outbox[0].body


def test_refunding_the_duplicate_of_a_paid_invoice_leaves_the_invoice_paid(user, staff_client, http, run_on_commit):
    """An invoice paid twice raises a payment_anomaly alert telling staff to refund the extra payment.

    Doing exactly that must leave the invoice paid (its money was received once, and kept): refunding the
    duplicate is not refunding the invoice.
    """
    import json

    import responses

    from payments.models import Invoice, Payment

    from . import stripe_fakes as fakes
    from .factories import PaymentFactory

    invoice = InvoiceFactory(owner=user, amount=2500, status=Invoice.Status.PAID)
    PaymentFactory(invoice=invoice, attempt=1, status=Payment.Status.SUCCEEDED, payment_intent_id="pi_first")
    extra = PaymentFactory(invoice=invoice, attempt=2, status=Payment.Status.SUCCEEDED, payment_intent_id="pi_extra")

    def stripe_refund(request):
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        body = fakes.refund(
            "re_extra",
            amount=int(form["amount"]),
            payment_intent=form["payment_intent"],
            hub_refund_id=form["metadata[hub_refund_id]"],
        )
        return (200, {"Request-Id": "req_re"}, json.dumps(body))

    http.add_callback(responses.POST, f"{fakes.API}/v1/refunds", callback=stripe_refund)
    with run_on_commit():
        response = staff_client.post(f"/api/v1/payments/payments/{extra.pk}/refunds/", {}, format="json")
    assert response.status_code == 202, response.json()
    extra.refresh_from_db()
    assert (extra.amount_refunded, extra.refunds.get().status) == (2500, "succeeded")

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_refunded) == ("paid", 0)


def test_the_refundable_remainder_counts_a_dashboard_refund_stripe_reported_on_the_charge(
    client, staff_client, user, run_on_commit
):
    """Since API version 2022-11-15 a charge no longer embeds its `refunds` list (events cannot expand it),
    so a refund made in the Dashboard reaches the hub as the charge.refunded event's `amount_refunded`.

    The hub records it (amount_refunded 1,000 of 2,500) but still lets staff refund all 2,500 again, which
    Stripe refuses: the remainder must be 1,500.
    """
    from payments.models import Invoice, Payment, Refund

    from . import stripe_fakes as fakes
    from .factories import PaymentFactory
    from .test_webhooks import deliver

    invoice = InvoiceFactory(owner=user, amount=2500, status=Invoice.Status.PAID)
    payment = PaymentFactory(invoice=invoice, status=Payment.Status.SUCCEEDED, payment_intent_id="pi_dash")
    charge = {
        "id": "ch_dash",
        "object": "charge",
        "payment_intent": "pi_dash",
        "amount": 2500,
        "currency": "usd",
        "amount_refunded": 1000,
        "refunded": False,
        "metadata": {},
    }
    with run_on_commit():
        assert deliver(client, fakes.event("charge.refunded", charge)).status_code == 200
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert (payment.amount_refunded, invoice.status) == (1000, "partially_refunded")

    response = staff_client.post(f"/api/v1/payments/payments/{payment.pk}/refunds/", {"amount": 2500}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "refund_exceeds_remaining" and response.json()["remaining"] == 1500
    assert not Refund.objects.exists()


def test_a_subscription_invoice_stripe_issued_cannot_be_paid_again_through_the_hub(
    client, user, user_client, http, run_on_commit
):
    """invoice.payment_failed mirrors Stripe's own subscription invoice as a `failed` Invoice and emails the owner
    to try again. Stripe keeps collecting that invoice itself (Smart Retries, the hosted invoice page), so a
    PaymentIntent the hub creates for it is a second, unrelated charge for the same money: paying it here must
    be refused (409), and Stripe must not be asked for an intent."""
    from payments.models import Invoice, Payment

    from . import stripe_fakes as fakes
    from .factories import CustomerFactory
    from .test_webhooks import deliver

    CustomerFactory(user=user, external_id="cus_sub")
    stripe_invoice = {
        "id": "in_sub_1",
        "object": "invoice",
        "customer": "cus_sub",
        "subscription": "sub_1",
        "number": "SUBINV-0001",
        "amount_due": 1900,
        "total": 1900,
        "currency": "usd",
        "status": "open",
    }
    with run_on_commit():
        assert deliver(client, fakes.event("invoice.payment_failed", stripe_invoice)).status_code == 200
    invoice = Invoice.objects.get(external_id="in_sub_1")
    assert (invoice.owner, invoice.status) == (user, "failed")

    http.post(f"{fakes.API}/v1/customers", json={"id": "cus_sub", "object": "customer"})
    http.post(
        f"{fakes.API}/v1/payment_intents",
        json={
            "id": "pi_second_charge",
            "object": "payment_intent",
            "amount": 1900,
            "currency": "usd",
            "status": "requires_payment_method",
            "client_secret": "pi_second_charge_secret",
            "metadata": {},
        },
    )
    response = user_client.post(f"/api/v1/payments/invoices/{invoice.pk}/pay/", {}, format="json")
    assert response.status_code == 409, response.json()
    assert response.json()["error"] == "invoice_not_payable"
    assert not Payment.objects.exists()
    assert not [c for c in http.calls if c.request.url.startswith(f"{fakes.API}/v1/payment_intents")]


def test_a_refund_that_fails_after_it_succeeded_takes_the_invoice_back_to_paid(client, user, run_on_commit):
    """Stripe can report a refund `failed` after it first succeeded (the card was closed): the money went back
    to the merchant. Refund allows succeeded -> failed, and the totals drop to 0, but the invoice stays
    `refunded` (a final state), so staff and the customer see a refunded invoice nobody was refunded for."""
    import time

    from payments.models import Invoice, Payment, Refund

    from . import stripe_fakes as fakes
    from .factories import PaymentFactory
    from .test_webhooks import deliver

    invoice = InvoiceFactory(owner=user, amount=1000, status=Invoice.Status.PAID)
    payment = PaymentFactory(invoice=invoice, status=Payment.Status.SUCCEEDED, payment_intent_id="pi_closed")
    Refund.objects.create(payment=payment, amount=1000, external_id="re_closed", idempotency_key="k")
    now = int(time.time())
    for status, created in (("succeeded", now - 60), ("failed", now)):
        refund = fakes.refund("re_closed", amount=1000, status=status, payment_intent="pi_closed")
        with run_on_commit():
            deliver(client, fakes.event("charge.refund.updated", refund, created=created))
        if status == "succeeded":
            invoice.refresh_from_db()
            assert (invoice.status, invoice.amount_refunded) == ("refunded", 1000)

    assert Refund.objects.get().status == "failed"
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.amount_refunded == 0
    assert (invoice.status, invoice.amount_refunded) == ("paid", 0)


def test_money_arriving_for_a_refunded_invoice_still_alerts_and_leaves_it_refunded(client, user, run_on_commit):
    """Guard for the fix above: refunded -> paid is now a legal move (a refund that failed), but only the
    refund totals take it; a second payment succeeding on a refunded invoice is an anomaly, as before."""
    from integrations.models import Alert
    from payments.models import Invoice, Payment

    from . import stripe_fakes as fakes
    from .factories import PaymentFactory
    from .test_webhooks import deliver

    invoice = InvoiceFactory(owner=user, amount=1000, status=Invoice.Status.REFUNDED, amount_refunded=1000)
    PaymentFactory(invoice=invoice, status=Payment.Status.SUCCEEDED, amount_refunded=1000, payment_intent_id="pi_a")
    late = PaymentFactory(invoice=invoice, status=Payment.Status.PENDING, payment_intent_id="pi_b")
    with run_on_commit():
        deliver(client, fakes.event("payment_intent.succeeded", fakes.intent(late, status="succeeded")))
    invoice.refresh_from_db()
    assert invoice.status == "refunded"
    assert Alert.objects.filter(kind="payment_anomaly").exists()


def test_a_refund_reported_before_the_payments_success_leaves_the_invoice_refunded(client, user, http, run_on_commit):
    """Stripe does not deliver events in order: a charge.refunded (a Dashboard refund) can reach the hub
    before the payment_intent.succeeded of the same payment (its delivery failed and Stripe retries it later).

    The refund was recorded on the payment, but the success then marked the invoice paid: the customer and
    staff saw a paid invoice whose money had all gone back, and an open invoice meanwhile claimed a refund
    of money it never received."""
    import time

    from payments.models import Invoice

    from . import stripe_fakes as fakes
    from .factories import PaymentFactory
    from .test_webhooks import deliver

    invoice = InvoiceFactory(owner=user, amount=2500)
    payment = PaymentFactory(invoice=invoice, payment_intent_id="pi_early")
    http.get(f"{fakes.API}/v1/payment_intents/pi_early", json=fakes.settled_intent("pi_early", charge_id="ch_early"))
    charge = {
        "id": "ch_early",
        "object": "charge",
        "payment_intent": "pi_early",
        "amount": 2500,
        "currency": "usd",
        "amount_refunded": 2500,
        "refunded": True,
        "metadata": {},
    }
    now = int(time.time())
    with run_on_commit():
        assert deliver(client, fakes.event("charge.refunded", charge, created=now)).status_code == 200
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_refunded) == ("open", 0)

    succeeded = fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded"), created=now - 60)
    with run_on_commit():
        assert deliver(client, succeeded).status_code == 200

    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", 2500)
    assert (invoice.status, invoice.amount_refunded) == (Invoice.Status.REFUNDED, 2500)
