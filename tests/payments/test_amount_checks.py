"""#17.6 (issue table row 6): Stripe's amount and currency must match the invoice before anything is applied."""

import pytest

from integrations.models import Alert
from payments.models import Invoice, Payment, Refund

from . import stripe_fakes as fakes
from .factories import InvoiceFactory, PaymentFactory, SucceededPaymentFactory

pytestmark = pytest.mark.django_db

URL = "/webhooks/stripe/"


def deliver(client, evt):
    body = fakes.body_of(evt)
    return client.post(URL, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=fakes.sign(body))


@pytest.fixture
def payment(user):
    invoice = InvoiceFactory(owner=user, amount=100000, currency="usd")
    return PaymentFactory(invoice=invoice, amount=100000, currency="usd", payment_intent_id="pi_big")


def _anomaly():
    return Alert.objects.filter(kind=Alert.Kind.PAYMENT_ANOMALY, severity=Alert.Severity.CRITICAL).first()


@pytest.mark.parametrize("amount, currency", [(1, "jpy"), (1, "usd"), (100000, "jpy"), (100000, None), (None, "usd")])
def test_a_succeeded_intent_for_other_money_changes_nothing_and_alerts(
    client, payment, run_on_commit, amount, currency
):
    intent = fakes.intent(payment, status="succeeded")
    intent.update(amount=amount, currency=currency)
    with run_on_commit():
        assert deliver(client, fakes.event("payment_intent.succeeded", intent)).status_code == 200
    payment.refresh_from_db()
    payment.invoice.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert payment.invoice.status != "paid"
    alert = _anomaly()
    assert alert is not None and str(payment.pk) in alert.message


def test_the_right_money_is_applied(client, payment, run_on_commit, http):
    http.get(f"{fakes.API}/v1/payment_intents/pi_big", json={"id": "pi_big", "object": "payment_intent"})
    with run_on_commit():
        deliver(client, fakes.event("payment_intent.succeeded", fakes.intent(payment, status="succeeded")))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    assert _anomaly() is None


def test_a_checkout_session_for_other_money_changes_nothing(client, user, run_on_commit):
    invoice = InvoiceFactory(owner=user, amount=100000, currency="usd")
    payment = PaymentFactory(invoice=invoice, amount=100000, method="checkout", checkout_session_id="cs_x")
    session = {
        "id": "cs_x",
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": 1,
        "currency": "jpy",
        "metadata": {"hub_payment_id": str(payment.pk)},
    }
    with run_on_commit():
        deliver(client, fakes.event("checkout.session.completed", session))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert _anomaly() is not None


class TestRefunds:
    def test_a_refund_update_in_another_currency_changes_nothing(self, client, run_on_commit):
        payment = SucceededPaymentFactory(currency="usd")
        refund = Refund.objects.create(payment=payment, amount=500, external_id="re_1", status="pending")
        stripe_refund = fakes.refund("re_1", amount=500, hub_refund_id=refund.pk)
        stripe_refund["currency"] = "jpy"
        with run_on_commit():
            deliver(client, fakes.event("charge.refund.updated", stripe_refund))
        refund.refresh_from_db()
        assert refund.status == "pending"
        assert _anomaly() is not None

    def test_a_refund_update_for_another_amount_changes_nothing(self, client, run_on_commit):
        payment = SucceededPaymentFactory(currency="usd")
        refund = Refund.objects.create(payment=payment, amount=500, external_id="re_2", status="pending")
        with run_on_commit():
            deliver(client, fakes.event("charge.refund.updated", fakes.refund("re_2", amount=50000)))
        refund.refresh_from_db()
        assert refund.status == "pending"
        assert _anomaly() is not None

    def test_the_matching_refund_is_applied(self, client, run_on_commit):
        payment = SucceededPaymentFactory(currency="usd")
        refund = Refund.objects.create(payment=payment, amount=500, external_id="re_3", status="pending")
        with run_on_commit():
            deliver(client, fakes.event("charge.refund.updated", fakes.refund("re_3", amount=500)))
        refund.refresh_from_db()
        assert refund.status == "succeeded"
        assert _anomaly() is None

    @pytest.mark.parametrize("amount, currency", [(100000, "jpy"), (1, "usd"), (100000, None)])
    def test_a_charge_refunded_for_other_money_changes_nothing(self, client, user, run_on_commit, amount, currency):
        # A signed charge.refunded carrying our payment's metadata, for other money: its amount_refunded once
        # marked the $1,000.00 invoice refunded (and its id was stamped on our payment), with no alert.
        invoice = InvoiceFactory(owner=user, amount=100000, currency="usd", status="paid")
        payment = SucceededPaymentFactory(invoice=invoice, amount=100000, currency="usd", payment_intent_id="pi_big")
        charge = {
            "id": "ch_other",
            "object": "charge",
            "payment_intent": "pi_other",
            "amount": amount,
            "currency": currency,
            "amount_refunded": amount,
            "refunded": True,
            "metadata": {"hub_payment_id": str(payment.pk)},
        }
        with run_on_commit():
            assert deliver(client, fakes.event("charge.refunded", charge)).status_code == 200
        payment.refresh_from_db()
        invoice.refresh_from_db()
        assert (payment.amount_refunded, payment.charge_id) == (0, "")
        assert (invoice.status, invoice.amount_refunded) == ("paid", 0)
        assert _anomaly() is not None


class TestAdminInvoices:
    """An invoice staff add in admin is held to what the API's invoice create checks (payments.currencies)."""

    @staticmethod
    def add(admin_client, user, *, amount, currency):
        data = {
            "owner": user.pk,
            "number": "INV-ADMIN-1",
            "description": "Set-up fee",
            "amount": amount,
            "currency": currency,
            "payments-TOTAL_FORMS": 0,
            "payments-INITIAL_FORMS": 0,
        }
        return admin_client.post("/admin/payments/invoice/add/", data)

    @pytest.mark.parametrize(
        ("amount", "currency"),
        [
            (10, "jpy"),  # under Stripe's ¥50 minimum
            (12345, "kwd"),  # three-decimal: must end in 0
            (150, "isk"),  # whole krónur only
            (2500, "xyz"),  # not a currency
        ],
    )
    def test_an_amount_stripe_would_refuse_is_a_form_error_not_an_invoice_nobody_can_pay(
        self, admin_client, user, amount, currency
    ):
        response = self.add(admin_client, user, amount=amount, currency=currency)
        assert response.status_code == 200
        assert response.context["adminform"].form.errors
        assert not Invoice.objects.exists()

    def test_an_accepted_currency_is_stored_lowercase_as_stripe_takes_it(self, admin_client, user):
        response = self.add(admin_client, user, amount=1999, currency="EUR")
        assert response.status_code == 302, response.context["adminform"].form.errors
        assert Invoice.objects.values_list("amount", "currency").get() == (1999, "eur")
