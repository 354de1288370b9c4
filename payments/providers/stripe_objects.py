"""The hub's own view of the Stripe objects the payments services read.

The adapter (`stripe.py`) returns these, never an SDK object or a raw dict.
Each type is built in one place, its `from_stripe(data)`, from Stripe's JSON
shape: the adapter passes the SDK object's `to_dict()`, and a webhook handler
passes its event's `data.object`, which Stripe sends in the same shape. So a
PaymentIntent from our request, from a signed event and from a reconcile page
reaches `payment_apply_intent` as one type, and the services never guess at
a dict's keys.

Each type holds only what the services read. Stripe omits or nulls fields
(an older API version, an object not yet settled, an unexpanded reference):
`from_stripe` decides once what absent means, so the services don't have to.
An expandable reference (`latest_charge`, `payment_intent`, `customer`) is
kept as its id whether Stripe sent the id or the expanded object. A refund or
subscription without an id is refused (KeyError): the services adopt rows by
that id, and "" would match every row not yet sent to Stripe.
"""

import datetime as dt
from dataclasses import dataclass, field


def stripe_id(value):
    """An expandable reference as its id: Stripe sends the id, the expanded object, or null."""
    if isinstance(value, dict):
        value = value.get("id")
    return value or ""


def _metadata(data):
    return dict(data.get("metadata") or {})


def _first_item(data):
    """The first subscription item (the hub's subscriptions have exactly one price), or {}."""
    items = (data.get("items") or {}).get("data") or []
    return items[0] if items else {}


def _epoch(value):
    return dt.datetime.fromtimestamp(value, tz=dt.UTC) if isinstance(value, int | float) and value else None


@dataclass(frozen=True)
class StripeCustomer:
    id: str

    @classmethod
    def from_stripe(cls, data):
        return cls(id=data["id"])


@dataclass(frozen=True)
class PaymentError:
    """A PaymentIntent's `last_payment_error`: why the last attempt was declined."""

    code: str  # the decline code when Stripe gives one (more precise), else the error code
    message: str

    @classmethod
    def from_stripe(cls, data):
        """None when Stripe reports no error (null, or an empty object)."""
        if not data:
            return None
        return cls(code=data.get("decline_code") or data.get("code") or "", message=data.get("message") or "")


@dataclass(frozen=True)
class StripePaymentIntent:
    id: str
    status: str
    # None when absent: the amount checks count a missing amount or currency as a mismatch.
    amount: int | None
    currency: str | None
    client_secret: str
    charge_id: str  # latest_charge, "" until a charge exists
    last_payment_error: PaymentError | None
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, data):
        return cls(
            id=data.get("id") or "",
            status=data.get("status") or "",
            amount=data.get("amount"),
            currency=data.get("currency"),
            client_secret=data.get("client_secret") or "",
            charge_id=stripe_id(data.get("latest_charge")),
            last_payment_error=PaymentError.from_stripe(data.get("last_payment_error")),
            metadata=_metadata(data),
        )


@dataclass(frozen=True)
class FeeRecord:
    """A succeeded PaymentIntent's charge and what Stripe kept for it (from the expanded balance transaction)."""

    intent_id: str
    charge_id: str
    fee: int | None  # minor units of fee_currency; None until Stripe has a balance transaction
    fee_currency: str

    @classmethod
    def from_stripe(cls, data):
        """From a PaymentIntent retrieved with `expand=["latest_charge.balance_transaction"]`."""
        charge = data.get("latest_charge")
        txn = charge.get("balance_transaction") if isinstance(charge, dict) else None
        txn = txn if isinstance(txn, dict) else {}
        return cls(
            intent_id=data.get("id") or "",
            charge_id=stripe_id(charge),
            fee=txn.get("fee"),
            fee_currency=txn.get("currency") or "",
        )


@dataclass(frozen=True)
class StripeCheckoutSession:
    id: str
    url: str | None  # null once the session is completed or expired
    payment_status: str
    payment_intent_id: str  # "" until the customer pays (or for a session that never creates one)
    amount_total: int | None
    currency: str | None
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, data):
        return cls(
            id=data.get("id") or "",
            url=data.get("url"),
            payment_status=data.get("payment_status") or "",
            payment_intent_id=stripe_id(data.get("payment_intent")),
            amount_total=data.get("amount_total"),
            currency=data.get("currency"),
            metadata=_metadata(data),
        )


@dataclass(frozen=True)
class StripeRefund:
    id: str
    status: str
    amount: int | None
    currency: str | None
    reason: str
    failure_reason: str  # "" unless the refund failed
    payment_intent_id: str  # "" for a refund of a charge made without a PaymentIntent
    charge_id: str
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, data):
        return cls(
            id=data["id"],
            status=data.get("status") or "",
            amount=data.get("amount"),
            currency=data.get("currency"),
            reason=data.get("reason") or "",
            failure_reason=data.get("failure_reason") or "",
            payment_intent_id=stripe_id(data.get("payment_intent")),
            charge_id=stripe_id(data.get("charge")),
            metadata=_metadata(data),
        )


@dataclass(frozen=True)
class StripeSubscription:
    id: str
    status: str
    customer_id: str
    cancel_at_period_end: bool
    current_period_end: dt.datetime | None
    # The first item's: the hub's subscriptions have one price, changed on that item.
    item_id: str
    price_id: str
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, data):
        item = _first_item(data)
        end = data.get("current_period_end")
        if end is None:  # newer API versions keep it per item
            end = item.get("current_period_end")
        return cls(
            id=data["id"],
            status=data.get("status") or "",
            customer_id=stripe_id(data.get("customer")),
            cancel_at_period_end=bool(data.get("cancel_at_period_end")),
            current_period_end=_epoch(end),
            item_id=item.get("id") or "",
            price_id=stripe_id(item.get("price")),
            metadata=_metadata(data),
        )


@dataclass(frozen=True)
class Page:
    """One page of a Stripe list: its items as the hub's type, and whether another page follows."""

    items: tuple
    has_more: bool

    @classmethod
    def from_stripe(cls, data, item):
        return cls(items=tuple(item(obj) for obj in data.get("data") or []), has_more=bool(data.get("has_more")))
