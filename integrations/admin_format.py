"""How the staff console shows money, latency, times and provider error codes.

Plain functions (no admin imports), so every app's admin can format the same
way: `usd(Decimal("0.000035"))` is "$0.00004", `minor_units(4900, "usd")` is
"$49.00", `when(dt)` is a <time> element in UTC that the console's script
shows in the staff member's own time zone, with UTC on hover.
"""

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.utils import timezone
from django.utils.html import format_html

# ISO 4217 currencies without a minor unit (Stripe's zero-decimal list) and the three-decimal ones.
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf"}
ZERO_DECIMAL |= {"xof", "xpf"}
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}
CENT = Decimal("0.01")


def _decimal(value):
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def usd(value, *, total=False):
    """Dollars with sensible precision: cents from a cent up, else one significant figure ($0.00004).

    `total=True` is for sums people compare (always cents; a non-zero total
    under half a cent reads "< $0.01" rather than a misleading $0.00).
    """
    amount = _decimal(value)
    if amount is None:
        return "—"
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0:
        return "$0.00"
    if amount >= CENT or (total and amount >= Decimal("0.005")):
        return f"{sign}${amount.quantize(CENT, ROUND_HALF_UP):,}"
    if total:
        return f"{sign}< $0.01"
    exponent = amount.adjusted()  # e.g. -5 for 0.000035
    rounded = amount.quantize(Decimal(1).scaleb(exponent), ROUND_HALF_UP)
    if rounded.adjusted() > exponent:  # 0.0000096 rounds up to 0.00001
        exponent += 1
    return f"{sign}${rounded:.{-exponent}f}"


def minor_units(amount, currency):
    """An amount in the currency's minor units as money: 4900 usd -> $49.00, 500 jpy -> ¥500, 1500 eur -> €15.00."""
    if amount is None:
        return "—"
    code = (currency or "").lower()
    places = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    value = Decimal(int(amount)).scaleb(-places)
    text = f"{abs(value):,.{places}f}"
    sign = "-" if value < 0 else ""
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {code.upper()}"


def latency(ms):
    """Milliseconds as people read them: 0.84 ms, 12 ms, 1,250 ms, 3.4 s."""
    if ms is None:
        return "—"
    ms = float(ms)
    if ms < 10:
        return f"{ms:.2f} ms" if ms < 1 else f"{ms:.1f} ms"
    if ms < 10_000:
        return f"{ms:,.0f} ms"
    return f"{ms / 1000:,.1f} s"


def percent(rate):
    if rate is None:
        return "—"
    pct = rate * 100
    if pct == 0:
        return "0 %"
    if pct < 0.1:
        return "< 0.1 %"
    return f"{pct:.1f} %" if pct < 10 else f"{pct:.0f} %"


def count(value):
    return f"{int(value or 0):,}"


def when(value):
    """A <time> element: UTC in the markup, shown in the reader's time zone by console.js, UTC on hover."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime) and timezone.is_aware(value):
        utc = value.astimezone(dt.UTC)
    else:
        utc = value
    return format_html(
        '<time class="console-time" datetime="{}" title="{} UTC">{} UTC</time>',
        utc.isoformat(),
        f"{utc:%Y-%m-%d %H:%M:%S}",
        f"{utc:%Y-%m-%d %H:%M:%S}",
    )


# What a provider's error code means, from the vendor's own documentation
# (Twilio's error dictionary, Stripe's error and decline codes, OpenAI's and
# Anthropic's error types, Amazon S3's error responses). Codes not listed show as
# they came; the call's error message is always beside them.
ERROR_MEANINGS = {
    "twilio": {
        "20003": "Authentication failed: wrong Account SID or Auth Token.",
        "20404": "The resource was not found.",
        "20429": "Too many requests: Twilio's rate limit.",
        "21211": "The 'To' number is not a valid phone number.",
        "21408": "Permission to send to this region is not enabled on the account.",
        "21610": "The recipient unsubscribed (replied STOP); Twilio blocks messages to them until they reply START.",
        "21612": "Twilio cannot route a message between these two numbers.",
        "21614": "The 'To' number is not a mobile number and cannot receive SMS.",
        "30003": "Unreachable destination handset (off, out of coverage or unable to receive).",
        "30005": "Unknown destination handset: the number does not exist or is no longer in service.",
        "30006": "Landline or unreachable carrier.",
        "30007": "Filtered by the carrier as spam or against its messaging policy.",
        "30008": "Unknown error from the carrier.",
    },
    "stripe": {
        "card_declined": "The card was declined.",
        "insufficient_funds": "The card has insufficient funds.",
        "expired_card": "The card has expired.",
        "incorrect_cvc": "The card's security code is incorrect.",
        "processing_error": "An error occurred while processing the card; the customer can try again.",
        "authentication_required": "The card needs authentication (3D Secure) to complete the payment.",
        "resource_missing": "The ID given does not exist on this Stripe account (or in this mode).",
        "idempotency_error": "The same Idempotency-Key was used with different parameters.",
        "rate_limit": "Too many requests hit the API too quickly.",
        "amount_too_small": "The amount is below Stripe's minimum for the currency.",
        "amount_too_large": "The amount is above Stripe's maximum for the currency.",
        "charge_already_refunded": "The charge has already been refunded in full.",
    },
    "openai": {
        "insufficient_quota": "The account is out of credit or over its monthly quota: billing must be fixed.",
        "rate_limit_exceeded": "Requests or tokens per minute over the organisation's limit.",
        "context_length_exceeded": "The prompt plus the answer exceed the model's context window.",
        "invalid_api_key": "The API key is wrong or revoked.",
        "model_not_found": "The model does not exist or this key has no access to it.",
    },
    "anthropic": {
        "overloaded_error": "Anthropic's API is temporarily overloaded.",
        "rate_limit_error": "The organisation's rate limit was hit.",
        "authentication_error": "The API key is missing or wrong.",
        "permission_error": "The API key lacks permission for this resource.",
        "invalid_request_error": "The request was malformed or missing a required parameter.",
    },
    "s3": {
        "NoSuchKey": "The object does not exist.",
        "NoSuchBucket": "The bucket does not exist.",
        "AccessDenied": "The credentials have no permission for this bucket or object.",
        "SlowDown": "S3 asks to reduce the request rate.",
        "EntityTooLarge": "The upload exceeds the maximum allowed object size.",
        "InvalidAccessKeyId": "The AWS access key ID does not exist.",
        "SignatureDoesNotMatch": "The request signature does not match: check the secret key.",
    },
}


def clipped(text, *, width=60):
    """A long text cut to `width` characters in a list cell, the whole of it (up to 500) on hover."""
    if not text:
        return ""
    short = text if len(text) <= width else text[: width - 1] + "…"
    return format_html('<span class="console-clip" title="{}">{}</span>', text[:500], short)


def error_meaning(provider, code):
    """The vendor's meaning of an error code, or "" when the vendor documents none we know."""
    return ERROR_MEANINGS.get(provider, {}).get(str(code or ""), "")


def pretty_json(value, *, hidden=()):
    """A stored JSON value as an indented block; the values of keys in `hidden` (at any depth) shown as
    [redacted]: what lets whoever reads the page act (a client_secret, a host's start URL), kept in the row."""

    def shown(v):
        if isinstance(v, dict):
            return {k: "[redacted]" if k in hidden and x else shown(x) for k, x in v.items()}
        if isinstance(v, list):
            return [shown(x) for x in v]
        return v

    return format_html("<pre>{}</pre>", json.dumps(shown(value), indent=2, sort_keys=True, default=str))
