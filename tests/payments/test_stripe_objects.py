"""The hub's Stripe types: what each constructor makes of a field Stripe omits or nulls, and that the
adapter hands them (never the SDK's objects or dicts) to the services."""

import dataclasses
import datetime as dt

import pytest

from payments.providers import stripe as stripe_api
from payments.providers.stripe_objects import (
    FeeRecord,
    Page,
    PaymentError,
    StripeCheckoutSession,
    StripeCustomer,
    StripePaymentIntent,
    StripeRefund,
    StripeSubscription,
)

from . import stripe_fakes as fakes


def test_a_customer_without_an_id_is_refused_rather_than_matching_every_unsent_row():
    assert StripeCustomer.from_stripe({"id": "cus_1", "object": "customer", "email": None}) == StripeCustomer("cus_1")
    with pytest.raises(KeyError):
        StripeCustomer.from_stripe({"object": "customer"})


def test_a_payment_intent_with_no_charge_yet_and_no_error_has_an_empty_charge_id_and_no_error():
    intent = StripePaymentIntent.from_stripe(
        {"id": "pi_1", "object": "payment_intent", "status": "requires_payment_method", "latest_charge": None}
    )
    assert (intent.charge_id, intent.last_payment_error, intent.metadata) == ("", None, {})
    assert (intent.amount, intent.currency) == (None, None)  # absent money stays absent: the amount check refuses it


def test_a_payment_intent_reads_its_charge_id_whether_stripe_sent_the_id_or_the_expanded_charge():
    by_id = StripePaymentIntent.from_stripe({"id": "pi_1", "latest_charge": "ch_1"})
    expanded = StripePaymentIntent.from_stripe({"id": "pi_1", "latest_charge": {"id": "ch_1", "object": "charge"}})
    assert by_id.charge_id == expanded.charge_id == "ch_1"


def test_a_decline_without_a_decline_code_falls_back_to_the_error_code_and_an_empty_error_is_none():
    error = {"type": "card_error", "code": "expired_card", "decline_code": None, "message": None}
    assert PaymentError.from_stripe(error) == PaymentError(code="expired_card", message="")
    assert PaymentError.from_stripe({}) is None
    assert StripePaymentIntent.from_stripe({"id": "pi_1", "last_payment_error": {}}).last_payment_error is None


def test_a_fee_record_before_stripe_has_a_balance_transaction_has_no_fee():
    unexpanded = FeeRecord.from_stripe({"id": "pi_1", "latest_charge": "ch_1"})
    pending = FeeRecord.from_stripe({"id": "pi_1", "latest_charge": {"id": "ch_1", "balance_transaction": None}})
    no_charge = FeeRecord.from_stripe({"id": "pi_1", "latest_charge": None})
    assert unexpanded == pending == FeeRecord(intent_id="pi_1", charge_id="ch_1", fee=None, fee_currency="")
    assert (no_charge.charge_id, no_charge.fee) == ("", None)


def test_an_expired_checkout_session_has_no_url_and_no_payment_intent():
    session = StripeCheckoutSession.from_stripe(
        {"id": "cs_1", "object": "checkout.session", "url": None, "payment_intent": None, "payment_status": "unpaid"}
    )
    assert (session.url, session.payment_intent_id, session.amount_total) == (None, "", None)


def test_a_refund_that_has_not_failed_has_an_empty_failure_reason_and_no_reason_or_metadata():
    refund = StripeRefund.from_stripe(
        {
            "id": "re_1",
            "object": "refund",
            "amount": 500,
            "currency": "usd",
            "status": "succeeded",
            "reason": None,
            "failure_reason": None,
            "metadata": None,
            "payment_intent": None,  # a refund of a charge made without a PaymentIntent
            "charge": {"id": "ch_1", "object": "charge"},
        }
    )
    assert (refund.failure_reason, refund.reason, refund.metadata) == ("", "", {})
    assert (refund.payment_intent_id, refund.charge_id) == ("", "ch_1")
    with pytest.raises(KeyError):
        StripeRefund.from_stripe({"object": "refund", "amount": 500})


def test_a_subscription_takes_its_period_end_from_its_item_when_the_api_version_omits_it_at_the_top():
    data = fakes.subscription("sub_1", customer="cus_1", period_end=1_900_000_000)
    assert "current_period_end" not in data  # newer API versions keep it per item
    sub = StripeSubscription.from_stripe(data)
    assert sub.current_period_end == dt.datetime.fromtimestamp(1_900_000_000, tz=dt.UTC)
    assert (sub.item_id, sub.price_id) == ("si_sub_1", "price_basic")
    older = StripeSubscription.from_stripe({**data, "current_period_end": 1_800_000_000})
    assert older.current_period_end == dt.datetime.fromtimestamp(1_800_000_000, tz=dt.UTC)


def test_a_subscription_without_items_or_period_end_has_empty_ids_and_no_period_end():
    sub = StripeSubscription.from_stripe(
        {"id": "sub_1", "object": "subscription", "status": "incomplete", "customer": {"id": "cus_1"}, "items": None}
    )
    assert (sub.item_id, sub.price_id, sub.current_period_end) == ("", "", None)
    assert (sub.customer_id, sub.cancel_at_period_end, sub.metadata) == ("cus_1", False, {})


def test_a_page_without_data_is_empty_and_last():
    assert Page.from_stripe({"object": "list"}, StripeRefund.from_stripe) == Page(items=(), has_more=False)


def test_the_types_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        StripeCustomer("cus_1").id = "cus_2"


@pytest.mark.django_db
def test_the_adapter_hands_the_services_the_hubs_types_built_from_the_sdks_answer(http):
    http.get(
        f"{fakes.API}/v1/refunds",
        json=fakes.stripe_list(
            [fakes.refund("re_1", amount=500, payment_intent="pi_1", hub_refund_id=7)], url="/v1/refunds", has_more=True
        ),
    )
    http.post(f"{fakes.API}/v1/customers", json={"id": "cus_9", "object": "customer", "email": "a@example.com"})
    page = stripe_api.refund_list(created_gte=0)
    customer = stripe_api.customer_create(email="a@example.com", name="", user_id=1, idempotency_key="k")
    assert page == Page(
        items=(
            StripeRefund(
                id="re_1",
                status="succeeded",
                amount=500,
                currency="usd",
                reason="",
                failure_reason="",
                payment_intent_id="pi_1",
                charge_id="ch_x",
                metadata={"hub_refund_id": "7"},
            ),
        ),
        has_more=True,
    )
    assert customer == StripeCustomer("cus_9")
