"""Subscriptions: created, repriced and cancelled by tasks (pending until Stripe confirms), kept in step by webhooks."""

import time

import pytest

from integrations.models import ProviderCall
from payments.models import Customer, Subscription

from . import stripe_fakes as fakes
from .factories import CustomerFactory, SubscriptionFactory
from .test_webhooks import deliver

pytestmark = pytest.mark.django_db

SUBS_URL = f"{fakes.API}/v1/subscriptions"


def test_the_subscription_lifecycle_create_change_price_cancel_at_period_end_then_deleted(
    staff_client, user, http, client, run_on_commit, django_capture_on_commit_callbacks
):
    CustomerFactory(user=user, external_id="cus_life")
    http.post(SUBS_URL, json=fakes.subscription("sub_1", customer="cus_life", status="incomplete"))

    # Staff subscribe the user: the row is pending until the task hears from Stripe.
    with django_capture_on_commit_callbacks() as queued:
        response = staff_client.post(
            "/api/v1/payments/subscriptions/", {"owner": user.pk, "price_id": "price_basic"}, format="json"
        )
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert response.json()["pending_operation"] == "create" and len(queued) == 1
    with run_on_commit():
        queued[0]()
    sub = Subscription.objects.get()
    assert (sub.external_id, sub.status, sub.item_id, sub.pending_operation) == ("sub_1", "incomplete", "si_sub_1", "")
    assert http.calls[0].request.headers["Idempotency-Key"] == f"hub-sub-{sub.pk}-op-1-create"

    # The first invoice is paid: Stripe activates it.
    now = int(time.time())
    with run_on_commit():
        deliver(
            client,
            fakes.event(
                "customer.subscription.updated",
                fakes.subscription("sub_1", customer="cus_life", status="active"),
                created=now,
            ),
        )
        # An older past_due (before the payment went through) arrives late: active -> past_due is legal, but stale.
        deliver(
            client,
            fakes.event(
                "customer.subscription.updated",
                fakes.subscription("sub_1", customer="cus_life", status="past_due", period_end=1),
                created=now - 5,
            ),
        )
    sub.refresh_from_db()
    assert sub.status == "active" and sub.current_period_end.timestamp() == 1_900_000_000

    # Change price.
    http.post(f"{SUBS_URL}/sub_1", json=fakes.subscription("sub_1", customer="cus_life", price="price_pro"))
    with run_on_commit():
        response = staff_client.post(
            f"/api/v1/payments/subscriptions/{sub.pk}/change-price/", {"price_id": "price_pro"}, format="json"
        )
    assert response.status_code == 202
    sub.refresh_from_db()
    assert (sub.price_id, sub.pending_operation) == ("price_pro", "")
    assert (
        "items[0][id]=si_sub_1" in http.calls[-1].request.body
        and "items[0][price]=price_pro" in http.calls[-1].request.body
    )

    # Cancel at period end.
    http.replace(
        "POST",
        f"{SUBS_URL}/sub_1",
        json=fakes.subscription("sub_1", customer="cus_life", price="price_pro", cancel_at_period_end=True),
    )
    with run_on_commit():
        staff_client.post(f"/api/v1/payments/subscriptions/{sub.pk}/cancel/", {"at_period_end": True}, format="json")
    sub.refresh_from_db()
    assert (sub.status, sub.cancel_at_period_end) == ("active", True)
    assert "cancel_at_period_end=true" in http.calls[-1].request.body

    # The period ends: Stripe deletes it. A late `updated` from before cannot bring it back.
    with run_on_commit():
        deliver(
            client,
            fakes.event(
                "customer.subscription.deleted",
                fakes.subscription("sub_1", customer="cus_life", status="canceled"),
                created=now + 10,
            ),
        )
        deliver(
            client,
            fakes.event(
                "customer.subscription.updated",
                fakes.subscription("sub_1", customer="cus_life", status="past_due"),
                created=now + 5,
            ),
        )
    sub.refresh_from_db()
    assert sub.status == "canceled"
    keys = [c.request.headers.get("Idempotency-Key") for c in http.calls]
    assert len(set(keys)) == len(keys) == 3  # one key per operation


def test_cancel_now_cancels_on_stripe_immediately(staff_client, http, run_on_commit):
    sub = SubscriptionFactory(external_id="sub_now")
    http.delete(f"{SUBS_URL}/sub_now", json=fakes.subscription("sub_now", customer="cus_x", status="canceled"))
    with run_on_commit():
        response = staff_client.post(
            f"/api/v1/payments/subscriptions/{sub.pk}/cancel/", {"at_period_end": False}, format="json"
        )
    assert response.status_code == 202
    sub.refresh_from_db()
    assert (sub.status, sub.pending_operation) == ("canceled", "")


def test_a_second_change_while_one_is_pending_is_409(staff_client):
    sub = SubscriptionFactory(pending_operation="change_price", pending_price_id="price_x")
    response = staff_client.post(f"/api/v1/payments/subscriptions/{sub.pk}/cancel/", {}, format="json")
    assert response.status_code == 409 and response.json()["error"] == "operation_pending"


def test_a_card_decline_on_create_is_permanent_recorded_and_not_retried(staff_client, user, http, run_on_commit):
    CustomerFactory(user=user, external_id="cus_decl")
    http.post(SUBS_URL, json=fakes.card_error_body("Your card was declined.", "do_not_honor"), status=402)
    with run_on_commit():
        staff_client.post(
            "/api/v1/payments/subscriptions/", {"owner": user.pk, "price_id": "price_basic"}, format="json"
        )
    sub = Subscription.objects.get()
    assert sub.status == "failed" and "declined" in sub.last_error and sub.pending_operation == ""
    call = ProviderCall.objects.get(operation="subscription.create")
    assert (call.http_status, call.retryable, call.error_code) == (402, False, "do_not_honor")
    assert len(http.calls) == 1


def test_a_customer_is_created_once_for_a_user_without_one(staff_client, user, http, run_on_commit):
    http.post(f"{fakes.API}/v1/customers", json={"id": "cus_lazy", "object": "customer"})
    http.post(SUBS_URL, json=fakes.subscription("sub_lazy", customer="cus_lazy", status="active"))
    with run_on_commit():
        staff_client.post(
            "/api/v1/payments/subscriptions/", {"owner": user.pk, "price_id": "price_basic"}, format="json"
        )
    customer = Customer.objects.get(user=user)
    assert customer.external_id == "cus_lazy"
    assert http.calls[0].request.headers["Idempotency-Key"] == f"hub-customer-user-{user.pk}-{customer.pk}"
    assert Subscription.objects.get().status == "active"


def test_a_subscription_made_in_the_dashboard_is_recorded_for_its_customer(client, run_on_commit):
    customer = CustomerFactory(external_id="cus_dash")
    with run_on_commit():
        deliver(
            client,
            fakes.event(
                "customer.subscription.created", fakes.subscription("sub_dash", customer="cus_dash", status="trialing")
            ),
        )
    sub = Subscription.objects.get()
    assert (sub.owner, sub.external_id, sub.status, sub.price_id) == (
        customer.user,
        "sub_dash",
        "trialing",
        "price_basic",
    )


def test_clients_see_only_their_own_subscriptions_and_cannot_change_them(user_client, user, other_user):
    mine = SubscriptionFactory(owner=user)
    theirs = SubscriptionFactory(owner=other_user)
    assert [s["id"] for s in user_client.get("/api/v1/payments/subscriptions/").json()["results"]] == [mine.pk]
    assert user_client.get(f"/api/v1/payments/subscriptions/{theirs.pk}/").status_code == 404
    assert user_client.post(f"/api/v1/payments/subscriptions/{mine.pk}/cancel/", {}, format="json").status_code == 403


def test_admin_cancel_action_queues_a_cancellation(admin_client, http, run_on_commit):
    sub = SubscriptionFactory(external_id="sub_adm")
    http.post(f"{SUBS_URL}/sub_adm", json=fakes.subscription("sub_adm", customer="cus_x", cancel_at_period_end=True))
    with run_on_commit():
        admin_client.post(
            "/admin/payments/subscription/",
            {"action": "cancel_at_period_end", "_selected_action": [sub.pk]},
            follow=True,
        )
    sub.refresh_from_db()
    assert sub.cancel_at_period_end is True


def test_an_event_for_another_stripe_subscription_carrying_our_id_does_not_change_ours(client, run_on_commit):
    """Metadata is a hint: our row already bound to sub_first is not Stripe's sub_second (a duplicate at Stripe)."""
    from integrations.models import Alert

    customer = CustomerFactory(external_id="cus_dup")
    ours = SubscriptionFactory(owner=customer.user, external_id="sub_first", status="active")
    with run_on_commit():
        response = deliver(
            client,
            fakes.event(
                "customer.subscription.updated",
                fakes.subscription("sub_second", customer="cus_dup", status="past_due", hub_id=ours.pk),
            ),
        )
    assert response.status_code == 200
    ours.refresh_from_db()
    assert (ours.external_id, ours.status) == ("sub_first", "active")
    # Stripe's other subscription is recorded as its own row for the same customer, and staff are told.
    other = Subscription.objects.get(external_id="sub_second")
    assert (other.owner, other.status) == (customer.user, "past_due")
    alert = Alert.objects.get(kind="payment_anomaly")
    assert "sub_second" in alert.message and "sub_first" in alert.message
