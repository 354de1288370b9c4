"""Realistic Stripe objects and events, and Stripe's own signing scheme, for tests.

Stripe signs `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`;
`sign` computes it with hmac here (not with the SDK under test).
"""

import hashlib
import hmac
import itertools
import json
import time

API = "https://api.stripe.com"
SECRET_KEY = "sk_test_51HubTestKey000000000000"
WEBHOOK_SECRET = "whsec_test_payments_0123456789"

_ids = itertools.count(1)


def sign(body, secret=WEBHOOK_SECRET, timestamp=None):
    t = int(time.time() if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(type, obj, *, event_id=None, created=None):
    return {
        "id": event_id or f"evt_{next(_ids):08d}",
        "object": "event",
        "type": type,
        "created": int(time.time() if created is None else created),
        "livemode": False,
        "api_version": "2025-10-29.clover",
        "data": {"object": obj},
    }


def body_of(evt):
    return json.dumps(evt).encode()


def intent(payment, *, status="requires_payment_method", pi_id=None, error=None, charge=None):
    obj = {
        "id": pi_id or payment.payment_intent_id,
        "object": "payment_intent",
        "amount": payment.amount,
        "currency": payment.currency,
        "status": status,
        "client_secret": f"{pi_id or payment.payment_intent_id}_secret_abc",
        "metadata": {"hub_payment_id": str(payment.pk), "hub_invoice_id": str(payment.invoice_id)},
        "last_payment_error": error,
        "latest_charge": charge,
    }
    return obj


def settled_intent(pi_id, *, fee=103, charge_id=None):
    """A succeeded PaymentIntent as the hub's fee look-up reads it: `latest_charge.balance_transaction` expanded."""
    return {
        "id": pi_id,
        "object": "payment_intent",
        "status": "succeeded",
        "latest_charge": {
            "id": charge_id or f"ch_{pi_id}",
            "object": "charge",
            "balance_transaction": {
                "id": f"txn_{pi_id}",
                "object": "balance_transaction",
                "fee": fee,
                "currency": "usd",
            },
        },
    }


def decline_error(code="card_declined", decline_code="insufficient_funds", message="Your card has insufficient funds."):
    return {"type": "card_error", "code": code, "decline_code": decline_code, "message": message}


def card_error_body(message="Your card was declined.", decline_code="generic_decline", code="card_declined"):
    return {"error": {"type": "card_error", "code": code, "decline_code": decline_code, "message": message}}


def refund(refund_id, *, amount, status="succeeded", payment_intent="pi_x", hub_refund_id=None, failure_reason=None):
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "currency": "usd",
        "status": status,
        "payment_intent": payment_intent,
        "charge": "ch_x",
        "failure_reason": failure_reason,
        "metadata": {"hub_refund_id": str(hub_refund_id)} if hub_refund_id else {},
    }


def subscription(
    sub_id,
    *,
    customer,
    status="active",
    price="price_basic",
    period_end=1_900_000_000,
    cancel_at_period_end=False,
    hub_id=None,
):
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "metadata": {"hub_subscription_id": str(hub_id)} if hub_id else {},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": f"si_{sub_id}",
                    "object": "subscription_item",
                    "price": {"id": price, "object": "price"},
                    "current_period_end": period_end,
                }
            ],
        },
    }


def stripe_list(items, *, url, has_more=False):
    return {"object": "list", "data": items, "has_more": has_more, "url": url}


def dispute(dispute_id, *, status="needs_response", amount=2500, charge="ch_d", payment_intent="pi_hook1"):
    """A Dispute object as Stripe sends it in every charge.dispute.* event (the dispute as it stood then)."""
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge,
        "created": int(time.time()),
        "currency": "usd",
        "evidence_details": {"due_by": int(time.time()) + 7 * 86400, "has_evidence": False, "past_due": False},
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": payment_intent,
        "reason": "fraudulent",
        "status": status,
    }
