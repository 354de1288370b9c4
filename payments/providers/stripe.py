"""The only module that imports the Stripe SDK.

Each function is one Stripe request run as one gateway attempt: the call is
logged, rate limited and circuit-broken by `integrations.gateway`, Stripe's
exceptions leave as the hub's own error types, and results come back as the
hub's own frozen dataclasses (`stripe_objects`), each built by its type's
`from_stripe` from the SDK object's JSON shape. No SDK object or raw dict
leaves this module.

The SDK's own retries are off (`max_network_retries=0`): the gateway plus the
Celery task base are the one retry loop, and every retry of a write reuses
the same `Idempotency-Key`, so Stripe applies it once.

Stripe's webhook events carry its objects in the same JSON shape as its API
answers, so a webhook handler turns `data.object` into the same type through
the same `from_stripe`: `payment_apply_intent`, `refund_upsert` and
`subscription_apply` read one type whether the object came from our request,
a signed event or a reconcile page.
"""

from urllib.parse import quote

import stripe
from django.conf import settings

from integrations import egress, gateway
from integrations.errors import CardDeclined, ProviderTimeout, ProviderUnavailable, error_from_http
from integrations.providers import ClientCache, ProviderAdapter, credentials_key, record_cost

from .stripe_objects import (
    FeeRecord,
    Page,
    StripeCheckoutSession,
    StripeCustomer,
    StripePaymentIntent,
    StripeRefund,
    StripeSubscription,
)

PROVIDER = "stripe"
WEBHOOK_TOLERANCE_SECONDS = 300


_clients = ClientCache(size=8)


class _HttpClient(stripe.RequestsClient):
    """Stripe's requests transport with nothing read from the environment per request.

    A requests session that trusts the environment scans every environment variable twice per request (proxy
    variables, then no_proxy for this host) and looks for a ~/.netrc: ~16 % of the worker's CPU per fee look-up,
    the Stripe request a drained webhook batch sends for every success (issue 11). The session follows the hub's
    egress rule instead (integrations.egress: the proxy the environment names for Stripe's host, NO_PROXY
    honoured, read once per process); TLS verification is Stripe's own CA bundle either way (the SDK passes it on
    every request, so REQUESTS_CA_BUNDLE never applied)."""

    def _request_internal(self, *args, **kwargs):
        if getattr(self._thread_local, "session", None) is None:
            self._thread_local.session = egress.session()  # one per thread, as the SDK keeps them
        return super()._request_internal(*args, **kwargs)


def client():
    """A StripeClient for the current key, base URL and timeout (cached by a hash of them)."""
    api_key, api_base, timeout = (
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE or "",
        gateway.timeout_for(PROVIDER),
    )

    def build():
        return stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=_HttpClient(timeout=timeout),
        )

    return _clients.get(credentials_key(api_key, api_base, timeout), build)


# Stripe's decline codes that must not be reported to the customer as they are ("present as a generic
# decline": telling whoever holds a stolen card that it was reported stolen helps no one but them).
MASKED_DECLINE_CODES = frozenset({"fraudulent", "lost_card", "stolen_card", "pickup_card", "merchant_blacklist"})


def _translate(exc):
    """A Stripe exception as the hub's error type (retryable or permanent)."""
    if isinstance(exc, stripe.APIConnectionError):
        text = str(exc)
        if "timed out" in text.lower() or "timeout" in text.lower():
            return ProviderTimeout(PROVIDER, "Stripe did not answer in time")
        return ProviderUnavailable(PROVIDER, "could not reach Stripe")
    headers = dict(exc.headers or {})
    code = exc.code
    if isinstance(exc, stripe.CardError):
        decline = getattr(exc.error, "decline_code", None) if exc.error else None
        error_code = code
        code = decline or code or "card_error"
        # The card's holder is told (402 card_declined), not asked to retry later as after a provider failure.
        masked = code in MASKED_DECLINE_CODES
        return CardDeclined(
            PROVIDER,
            exc.user_message or "",
            code=code,
            # Stripe's error code (card_declined, expired_card, ...), masked as the decline code is.
            provider_code="" if error_code in MASKED_DECLINE_CODES else (error_code or ""),
            http_status=exc.http_status or 402,
            request_id=exc.request_id,
            shown_code="generic_decline" if masked else code,
            shown_message="Your card was declined." if masked else (exc.user_message or ""),
        )
    return error_from_http(
        PROVIDER,
        exc.http_status or 0,
        headers=headers,
        code=code,
        message=exc.user_message or "",
        request_id=exc.request_id,
    )


class StripeAdapter(ProviderAdapter):
    provider = PROVIDER
    sdk_errors = (stripe.StripeError,)

    def translate(self, exc):
        return _translate(exc)


STRIPE = StripeAdapter()


def _request_id(obj):
    response = obj if isinstance(obj, stripe.StripeResponse) else getattr(obj, "last_response", None)
    return getattr(response, "request_id", None) if response is not None else None


def _raw_get(path, **params):
    """`fn` for _run: a GET answered as Stripe's JSON, without the SDK's object tree.

    For reads the hub does for every event of a kind (a drained batch's fee look-ups): the SDK builds a
    StripeObject for every nested object of the answer, which _run then turns back into a dict, ~10 % of a fee
    look-up's CPU (issue 11). Errors are the SDK's own, as from a service call."""
    return lambda _v1, _options: client().raw_request("get", path, **params)


def _run(operation, fn, build, *, owner=None, related=None, idempotency_key=None, cost=None):
    """One Stripe request as one gateway attempt; `build(data)` turns the answer's JSON into the hub's type.

    `cost(result) -> (units, cost_usd)` as every adapter's (integrations.providers.record_cost); without it the
    call is one request, priced by the price table."""
    with STRIPE.attempt(operation, owner=owner, related=related, idempotency_key=idempotency_key) as call:
        options = {"idempotency_key": idempotency_key} if idempotency_key else None
        obj = fn(client().v1, options)
        # A raw read (_raw_get) answers Stripe's JSON as it came; a service call an object tree, turned back here.
        result = build(obj.data if isinstance(obj, stripe.StripeResponse) else obj.to_dict())
        if cost is None:
            call.record(http_status=200, request_id=_request_id(obj), units={"requests": 1})
        else:
            call.record(http_status=200, request_id=_request_id(obj))
            record_cost(call, cost, result)
    return result


def _page_of(item):
    return lambda data: Page.from_stripe(data, item)


# --- Customers ------------------------------------------------------------


def customer_create(*, email, name, user_id, idempotency_key, owner=None):
    params = {"email": email or None, "name": name or None, "metadata": {"hub_user_id": str(user_id)}}
    params = {k: v for k, v in params.items() if v is not None}
    return _run(
        "customer.create",
        lambda v1, o: v1.customers.create(params, o),
        StripeCustomer.from_stripe,
        owner=owner,
        idempotency_key=idempotency_key,
    )


# --- Payments -------------------------------------------------------------


def payment_intent_create(
    *, amount, currency, customer, metadata, description, idempotency_key, owner=None, related=None
):
    params = {
        "amount": amount,
        "currency": currency,
        "customer": customer,
        "metadata": metadata,
        "automatic_payment_methods": {"enabled": True},
    }
    if description:
        params["description"] = description
    return _run(
        "payment_intent.create",
        lambda v1, o: v1.payment_intents.create(params, o),
        StripePaymentIntent.from_stripe,
        owner=owner,
        related=related,
        idempotency_key=idempotency_key,
    )


def payment_intent_cancel(intent_id, *, idempotency_key, owner=None, related=None):
    return _run(
        "payment_intent.cancel",
        lambda v1, o: v1.payment_intents.cancel(intent_id, None, o),
        StripePaymentIntent.from_stripe,
        owner=owner,
        related=related,
        idempotency_key=idempotency_key,
    )


def checkout_session_create(
    *,
    amount,
    currency,
    customer,
    product_name,
    metadata,
    success_url,
    cancel_url,
    idempotency_key,
    owner=None,
    related=None,
):
    params = {
        "mode": "payment",
        "customer": customer,
        "line_items": [
            {
                "quantity": 1,
                "price_data": {"currency": currency, "unit_amount": amount, "product_data": {"name": product_name}},
            }
        ],
        "payment_intent_data": {"metadata": metadata},
        "metadata": metadata,
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    return _run(
        "checkout.session.create",
        lambda v1, o: v1.checkout.sessions.create(params, o),
        StripeCheckoutSession.from_stripe,
        owner=owner,
        related=related,
        idempotency_key=idempotency_key,
    )


def checkout_session_expire(session_id, *, idempotency_key, owner=None, related=None):
    return _run(
        "checkout.session.expire",
        lambda v1, o: v1.checkout.sessions.expire(session_id, None, o),
        StripeCheckoutSession.from_stripe,
        owner=owner,
        related=related,
        idempotency_key=idempotency_key,
    )


def _fee_cost(fallback_amount, currency):
    """Stripe's real fee from the balance transaction (USD only); otherwise the price table prices the amount."""

    def cost(fee):
        units = {"amount_usd": fallback_amount / 100} if currency == "usd" else {"amount_minor": fallback_amount}
        if fee.fee is not None and fee.fee_currency == "usd":
            return units, f"{fee.fee / 100:.2f}"
        return units, None

    return cost


def charge_fee_record(intent_id, *, amount, currency, owner=None, related=None):
    """Look up a succeeded intent's charge; the ProviderCall of operation `charge` carries Stripe's fee."""
    return _run(
        "charge",
        _raw_get(f"/v1/payment_intents/{quote(intent_id, safe='')}", expand=["latest_charge.balance_transaction"]),
        FeeRecord.from_stripe,
        owner=owner,
        related=related,
        cost=_fee_cost(amount, currency),
    )


def payment_intent_list(*, created_gte, starting_after=None, limit=100):
    params = {"created": {"gte": int(created_gte)}, "limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    return _run(
        "payment_intent.list",
        lambda v1, o: v1.payment_intents.list(params, o),
        _page_of(StripePaymentIntent.from_stripe),
    )


def refund_list(*, created_gte, starting_after=None, limit=100):
    params = {"created": {"gte": int(created_gte)}, "limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    return _run("refund.list", lambda v1, o: v1.refunds.list(params, o), _page_of(StripeRefund.from_stripe))


# --- Refunds --------------------------------------------------------------


def refund_create(*, payment_intent, amount, reason, metadata, idempotency_key, owner=None, related=None):
    params = {"payment_intent": payment_intent, "amount": amount, "metadata": metadata}
    if reason:
        params["reason"] = reason
    return _run(
        "refund.create",
        lambda v1, o: v1.refunds.create(params, o),
        StripeRefund.from_stripe,
        owner=owner,
        related=related,
        idempotency_key=idempotency_key,
    )


# --- Subscriptions --------------------------------------------------------


def subscription_create(*, customer, price_id, metadata, idempotency_key, owner=None, related=None):
    params = {"customer": customer, "items": [{"price": price_id}], "metadata": metadata}
    return _run(
        "subscription.create",
        lambda v1, o: v1.subscriptions.create(params, o),
        StripeSubscription.from_stripe,
        owner=owner,
        related=related,
        idempotency_key=idempotency_key,
    )


def subscription_retrieve(subscription_id, *, owner=None, related=None):
    return _run(
        "subscription.retrieve",
        lambda v1, o: v1.subscriptions.retrieve(subscription_id, None, o),
        StripeSubscription.from_stripe,
        owner=owner,
        related=related,
    )


def subscription_change_price(subscription_id, *, item_id, price_id, idempotency_key, owner=None, related=None):
    params = {"items": [{"id": item_id, "price": price_id}], "proration_behavior": "create_prorations"}
    return _run(
        "subscription.update",
        lambda v1, o: v1.subscriptions.update(subscription_id, params, o),
        StripeSubscription.from_stripe,
        owner=owner,
        related=related,
        idempotency_key=idempotency_key,
    )


def subscription_cancel_at_period_end(subscription_id, *, idempotency_key, owner=None, related=None):
    return _run(
        "subscription.update",
        lambda v1, o: v1.subscriptions.update(subscription_id, {"cancel_at_period_end": True}, o),
        StripeSubscription.from_stripe,
        owner=owner,
        related=related,
        idempotency_key=idempotency_key,
    )


def subscription_cancel_now(subscription_id, *, idempotency_key, owner=None, related=None):
    return _run(
        "subscription.cancel",
        lambda v1, o: v1.subscriptions.cancel(subscription_id, None, o),
        StripeSubscription.from_stripe,
        owner=owner,
        related=related,
        idempotency_key=idempotency_key,
    )


# --- Webhooks -------------------------------------------------------------


def webhook_signature_valid(payload, signature_header, secret):
    """Whether `Stripe-Signature` signs this body with this secret, by the SDK's own verifier.

    The timestamp is not judged here: the shared verifier base checks the
    replay window (WEBHOOK_TOLERANCE_SECONDS) for every provider the same way.
    UnicodeDecodeError for a body that is not UTF-8 (it cannot be a Stripe event).
    """
    try:
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        return False
    return True


def webhook_signed_at(signature_header):
    """The `t=` Unix timestamp Stripe signed, or None.

    Read exactly as the SDK's verifier reads the one it signs with (the first item whose key is "t", items
    neither stripped nor skipped), so the replay window judges the timestamp the HMAC covered, never a
    second `t` a replayer added.
    """
    items = [item.split("=", 2) for item in signature_header.split(",")]
    stamps = [item[1] for item in items if item[0] == "t" and len(item) > 1]
    if not stamps:
        return None
    try:
        return int(stamps[0])
    except ValueError:
        return None
