"""Stripe webhooks through the shared inbox: POST /webhooks/stripe/.

The verifier (a WebhookVerifier: the shared checks and status policy) checks
`Stripe-Signature` with the SDK's own verifier and a 300 s replay window before
anything is stored, against each secret in STRIPE_WEBHOOK_SECRET (two,
comma-separated, while a rotation overlaps); the inbox de-duplicates on the event id
and a worker runs the handler below for the event's type. Handlers are
idempotent and safe out of order: each passes the event's `created` to the
state machines, so an older event never overwrites what a newer one set, and
a late `payment_intent.payment_failed` never takes a paid invoice back.
Types without a handler are stored and marked ignored by the inbox.
"""

import dataclasses

from integrations.webhooks import (
    InboundEvent,
    WebhookRejected,
    WebhookVerifier,
    epoch_datetime,
    json_body,
    safe_headers,
    webhook_batch_preparer,
    webhook_handler,
    webhook_handlers_rarely_raise,
    webhook_ordering_key,
    webhook_verifier,
)

from . import services
from .models import Payment
from .providers import stripe as stripe_api
from .providers.stripe_objects import StripeCheckoutSession, StripePaymentIntent, StripeRefund, StripeSubscription

PROVIDER = "stripe"
SIGNATURE_HEADER = "Stripe-Signature"


def _text(value):
    """A non-empty string (Stripe's ids and types are; anything else would be stored under its repr)."""
    return isinstance(value, str) and value != ""


class StripeVerifier(WebhookVerifier):
    """`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">` checked by the SDK; 300 s replay window."""

    provider = PROVIDER
    secret_setting = "STRIPE_WEBHOOK_SECRET"
    signature_header = SIGNATURE_HEADER
    content_types = ("application/json",)
    tolerance_seconds = stripe_api.WEBHOOK_TOLERANCE_SECONDS

    def signature_matches(self, request, signature, secret):
        try:
            return stripe_api.webhook_signature_valid(request.body, signature, secret)
        except UnicodeDecodeError:
            raise WebhookRejected(
                400, "malformed_body", "The body is not UTF-8, so it is not a Stripe event."
            ) from None

    def signed_at(self, request, signature):
        return stripe_api.webhook_signed_at(signature)

    def parse(self, request):
        data = json_body(request)
        if not _text(data.get("id")) or not _text(data.get("type")):
            raise WebhookRejected(400, "malformed_event", "A Stripe event needs an id, a type and data.object.")
        if not isinstance((data.get("data") or {}).get("object"), dict):
            raise WebhookRejected(400, "malformed_event", "A Stripe event needs an id, a type and data.object.")
        created = data.get("created")
        return InboundEvent(
            event_id=data["id"],
            type=data["type"],
            payload=data,
            occurred_at=epoch_datetime(created),
            headers=safe_headers(request, [SIGNATURE_HEADER, "User-Agent", "Content-Type"]),
        )


verify = webhook_verifier(PROVIDER)(StripeVerifier())


def _object(event):
    return event.payload["data"]["object"]


@webhook_ordering_key(PROVIDER)
def payment_key(payload):
    """The object an event is about, for the drain's per-object order: the PaymentIntent where there is one.

    A payment's events (payment_intent.*, its Checkout Session, charge, refund and dispute) then go through
    one drainer at a time in Stripe's event order, so two workers never write its rows at once; anything else
    (a subscription) is its own object.
    """
    obj = payload["data"]["object"]
    if obj.get("object") == "payment_intent":
        return obj.get("id")
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):  # expanded
        intent = intent.get("id")
    return intent or obj.get("id")


# A Stripe handler raises only for an event that is really wrong (a payload it cannot read): a drained batch
# runs them in one savepoint, and again with one each only when one of them raises.
webhook_handlers_rarely_raise(PROVIDER)


INTENT_EVENTS = {
    "payment_intent.succeeded": Payment.Status.SUCCEEDED,
    "payment_intent.payment_failed": Payment.Status.FAILED,
    "payment_intent.canceled": Payment.Status.CANCELED,
}


@webhook_batch_preparer(PROVIDER)
def prefetch_payments(events):
    """The Payments of a batch's payment_intent.* events in one query, instead of one per event.

    Each Payment is left on every event of the batch about it
    (`event.prefetched_payment`), the same object: what an earlier event's
    handler moved it to (services.payment_apply keeps its status and its
    invoice's) is the next one's guess, so a payment's failure and success
    in one batch read it once (a burst's pairs mostly are). A row that
    another kind of event of the batch moved first (a Checkout Session's),
    or a write of a handler whose savepoint was rolled back, is safe too:
    transitions update from the state they find, the one held here is only
    their first guess. An event whose payload cannot be read here is left to
    its handler (which fails it alone, as without the batch).
    """
    intents = {}
    for event in events:
        if event.type in INTENT_EVENTS:
            try:
                intents[event] = StripePaymentIntent.from_stripe(_object(event))
            except Exception:  # noqa: BLE001 - its handler meets the same payload and fails that event alone
                continue
    found = services.payments_for_intents(intents.values())
    for event, intent in intents.items():
        payment = found.get(intent.id)
        if payment is not None:
            event.prefetched_payment = payment


@webhook_handler(PROVIDER, *INTENT_EVENTS)
def on_payment_intent(event):
    intent = StripePaymentIntent.from_stripe(_object(event))
    services.payment_apply_intent(
        intent=intent,
        occurred_at=event.occurred_at,
        forced_status=INTENT_EVENTS[event.type],
        payment=getattr(event, "prefetched_payment", None),
    )


@webhook_handler(PROVIDER, "checkout.session.completed", "checkout.session.expired")
def on_checkout_session(event):
    session = StripeCheckoutSession.from_stripe(_object(event))
    payment = services.payment_for_stripe_object(metadata=session.metadata, checkout_session=session.id)
    if payment is None:
        return
    if event.type == "checkout.session.completed" and services.money_mismatch(
        payment=payment,
        amount=session.amount_total,
        currency=session.currency,
        source=f"Checkout Session {session.id}",
    ):
        return
    if event.type == "checkout.session.expired":
        to = Payment.Status.CANCELED
    elif session.payment_status in ("paid", "no_payment_required"):
        to = Payment.Status.SUCCEEDED
    else:
        to = Payment.Status.PROCESSING  # an asynchronous method (bank debit): payment_intent.* follows
    services.payment_apply(payment=payment, to=to, occurred_at=event.occurred_at, intent_id=session.payment_intent_id)


@webhook_handler(PROVIDER, "charge.refunded")
def on_charge_refunded(event):
    services.charge_refunded_apply(charge=_object(event), occurred_at=event.occurred_at)


# Since API version 2024-10-28.acacia Stripe sends refund.created, refund.updated and refund.failed for every
# refund, a Dashboard refund included, while a charge no longer lists its refunds (2022-11-15): these events are
# how a refund made outside the hub becomes a Refund row (by its id), so the totals recomputed from the rows keep it.
@webhook_handler(PROVIDER, "charge.refund.updated", "refund.created", "refund.updated", "refund.failed")
def on_refund_updated(event):
    services.refund_upsert(stripe_refund=StripeRefund.from_stripe(_object(event)), occurred_at=event.occurred_at)


# Each carries the Dispute as it stood then; the payment keeps the newest status and a closed dispute stays closed.
@webhook_handler(
    PROVIDER,
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "charge.dispute.closed",
)
def on_dispute(event):
    services.dispute_record(
        dispute=_object(event), occurred_at=event.occurred_at, opened=event.type == "charge.dispute.created"
    )


@webhook_handler(
    PROVIDER, "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"
)
def on_subscription(event):
    subscription = StripeSubscription.from_stripe(_object(event))
    if event.type == "customer.subscription.deleted":
        subscription = dataclasses.replace(subscription, status="canceled")
    services.subscription_upsert(data=subscription, occurred_at=event.occurred_at)


@webhook_handler(PROVIDER, "customer.deleted")
def on_customer_deleted(event):
    services.customer_forget(external_id=_object(event).get("id"))


@webhook_handler(PROVIDER, "invoice.paid", "invoice.payment_failed")
def on_stripe_invoice(event):
    services.stripe_invoice_apply(data=_object(event), paid=event.type == "invoice.paid", occurred_at=event.occurred_at)
