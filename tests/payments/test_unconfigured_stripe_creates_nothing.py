"""Without a Stripe key, subscribing, repricing, cancelling and refunding answer 503 and create nothing.

On a fresh `make run` (no STRIPE_SECRET_KEY) a staff POST to /api/v1/payments/subscriptions/ answered
202 "pending", stored the row and queued a task that could only fail: "not configured" passed for
success until the row turned `failed`. Paying an invoice already answered 503; these now do too.
"""

import pytest

from payments.models import Refund, Subscription

from .factories import SubscriptionFactory, SucceededPaymentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def stripe_unset(settings, stripe_configured):
    settings.STRIPE_SECRET_KEY = ""


def _is_not_configured(response):
    assert response.status_code == 503, response.content
    body = response.json()
    assert (body["error"], body["provider"], body["missing"]) == (
        "provider_not_configured",
        "stripe",
        ["STRIPE_SECRET_KEY"],
    )


def test_subscribing_is_503_and_stores_no_subscription(staff_client, user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        response = staff_client.post(
            "/api/v1/payments/subscriptions/", {"owner": user.pk, "price_id": "price_basic"}, format="json"
        )
    _is_not_configured(response)
    assert not Subscription.objects.exists()
    assert queued == []


@pytest.mark.parametrize(("action", "body"), [("change-price", {"price_id": "price_pro"}), ("cancel", {})])
def test_changing_a_subscription_is_503_and_leaves_it_as_it_was(staff_client, action, body):
    sub = SubscriptionFactory(external_id="sub_live")
    response = staff_client.post(f"/api/v1/payments/subscriptions/{sub.pk}/{action}/", body, format="json")
    _is_not_configured(response)
    sub.refresh_from_db()
    assert (sub.pending_operation, sub.pending_price_id, sub.status) == ("", "", "active")


def test_refunding_is_503_and_stores_no_refund(staff_client, user):
    payment = SucceededPaymentFactory(invoice__owner=user, invoice__amount=1000, payment_intent_id="pi_paid1")
    response = staff_client.post(f"/api/v1/payments/payments/{payment.pk}/refunds/", {"amount": 500}, format="json")
    _is_not_configured(response)
    assert not Refund.objects.exists()


def test_a_missing_subscription_is_still_404_before_the_configuration_check(staff_client):
    response = staff_client.post("/api/v1/payments/subscriptions/999999/cancel/", {}, format="json")
    assert response.status_code == 404
