"""The verifier contract and the helpers provider verifiers share.

A verifier is `verify(request) -> InboundEvent | list[InboundEvent]`. It checks
the signature (constant-time), parses the body and normalises the event; on
any problem it raises WebhookRejected and nothing is stored.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings

# Never stored, whatever a verifier asks for: credentials, not evidence.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)


class WebhookRejected(Exception):
    """The delivery is refused: 400 malformed, 403 bad signature, 503 webhook secret not configured."""

    def __init__(self, status, code, detail):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass
class InboundEvent:
    """A verified delivery, normalised. `payload` is the provider's body, kept as sent."""

    event_id: str
    type: str
    payload: dict
    occurred_at: datetime | None = None
    # The safe subset to keep for audit; build it with safe_headers().
    headers: dict = field(default_factory=dict)
    signature_verified: bool = True


def safe_headers(request, names):
    """The named request headers (those present), minus credentials such as Authorization.

    Signature headers (Stripe-Signature, X-Twilio-Signature) may be kept for
    audit: they are digests, not the shared secret.
    """
    kept = {}
    for name in names:
        if name.lower() in SECRET_HEADERS:
            continue
        value = request.headers.get(name)
        if value is not None:
            kept[name] = value
    return kept


def webhook_secret(setting_name):
    """The provider's webhook secret, or a 503 naming the setting when it is not configured."""
    value = getattr(settings, setting_name, "")
    if not value:
        raise WebhookRejected(
            503, "webhook_not_configured", f"This webhook is not configured; set {setting_name} on the hub."
        )
    return value


def hmac_sha256_hex(secret, message):
    key = secret.encode() if isinstance(secret, str) else secret
    msg = message.encode() if isinstance(message, str) else message
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def signatures_match(expected, received):
    """Constant-time comparison, so timing does not reveal how much of a forged signature was right."""
    return hmac.compare_digest(str(expected).encode(), str(received).encode())


def epoch_datetime(value):
    """A provider's Unix timestamp as an aware datetime; None when absent, a 400 when out of range."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        when = datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        when = None
    if when is None or not 1970 <= when.year <= 9000:
        raise WebhookRejected(400, "malformed_event", f"The event timestamp {value!r} is out of range.")
    return when


def json_body(request):
    """The body parsed as a JSON object, or a 400 saying why it is not one."""
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected(400, "malformed_body", f"The body is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise WebhookRejected(400, "malformed_body", "The body must be a JSON object.")
    return data
