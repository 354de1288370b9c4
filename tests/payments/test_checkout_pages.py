"""Stripe Checkout sends the customer back to pages the hub serves, which read the state from the hub."""

from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.urls import resolve

from payments.models import Invoice, Payment

from .factories import InvoiceFactory, PaymentFactory

pytestmark = pytest.mark.django_db


def _path(url):
    return urlsplit(url.replace("{CHECKOUT_SESSION_ID}", "cs_test_x")).path


def test_the_default_return_urls_sent_to_stripe_resolve_to_pages():
    assert resolve(_path(django_settings.STRIPE_CHECKOUT_SUCCESS_URL)).url_name == "checkout-success"
    assert resolve(_path(django_settings.STRIPE_CHECKOUT_CANCEL_URL)).url_name == "checkout-cancel"


def _checkout(invoice_status, payment_status, session="cs_test_abc"):
    invoice = InvoiceFactory(amount=4900, currency="usd", status=invoice_status)
    return PaymentFactory(
        invoice=invoice, method=Payment.Method.CHECKOUT, status=payment_status, checkout_session_id=session
    )


def test_a_paid_invoice_shows_paid_with_its_amount(client):
    payment = _checkout(Invoice.Status.PAID, Payment.Status.SUCCEEDED)
    response = client.get("/payments/checkout/success", {"session_id": "cs_test_abc"})
    text = response.content.decode()
    assert response.status_code == 200
    assert "Payment received." in text and payment.invoice.number in text and "49.00 USD" in text


def test_before_the_webhook_the_page_says_it_is_confirming_and_looks_again(client):
    _checkout(Invoice.Status.OPEN, Payment.Status.PENDING)
    text = client.get("/payments/checkout/success", {"session_id": "cs_test_abc"}).content.decode()
    assert "Confirming your payment" in text and 'http-equiv="refresh"' in text
    assert "Payment received." not in text


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (Invoice.Status.REFUNDED, "has since been refunded. "),
        (Invoice.Status.PARTIALLY_REFUNDED, "has since been refunded in part. "),
    ],
)
def test_a_refunded_invoice_says_so_and_stops_looking_again(client, status, said):
    """It showed "Confirming your payment" and reloaded every 5 s for good: a refund is final, not pending."""
    _checkout(status, Payment.Status.SUCCEEDED)
    text = client.get("/payments/checkout/success", {"session_id": "cs_test_abc"}).content.decode()
    assert "Payment received, then refunded." in text and said in text and "49.00 USD" in text
    assert "Confirming" not in text and 'http-equiv="refresh"' not in text


def test_a_failed_attempt_shows_not_paid(client):
    _checkout(Invoice.Status.OPEN, Payment.Status.FAILED)
    text = client.get("/payments/checkout/success", {"session_id": "cs_test_abc"}).content.decode()
    assert "Not paid." in text


@pytest.mark.parametrize("session_id", ["", "cs_test_unknown", "<script>", "x" * 500])
def test_an_unknown_or_malformed_session_is_a_404_page_that_claims_nothing(client, session_id):
    _checkout(Invoice.Status.PAID, Payment.Status.SUCCEEDED)
    response = client.get("/payments/checkout/success", {"session_id": session_id})
    text = response.content.decode()
    assert response.status_code == 404 and "cannot find this payment" in text
    assert "Payment received." not in text and "<script>" not in text


def test_the_cancel_page_says_nothing_was_charged(client):
    response = client.get("/payments/checkout/cancel")
    assert response.status_code == 200 and "nothing was charged" in response.content.decode()


def test_the_page_style_is_allowed_by_the_content_security_policy(client):
    response = client.get("/payments/checkout/cancel")
    text = response.content.decode()
    nonce = text.split('<style nonce="', 1)[1].split('"', 1)[0]
    assert nonce and f"'nonce-{nonce}'" in response["Content-Security-Policy"]
