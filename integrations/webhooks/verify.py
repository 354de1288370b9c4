"""The verifier contract and the helpers provider verifiers share.

A verifier is `verify(request) -> InboundEvent | list[InboundEvent]`. It checks
the signature (constant-time), parses the body and normalises the event; on
any problem it raises WebhookRejected and nothing is stored. Every provider's
verifier subclasses `WebhookVerifier`, which runs the shared checks in one
order with one status policy; tests/contracts/webhooks.py holds each one to it.
"""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http.request import HttpHeaders

# Never stored, whatever a verifier asks for: credentials, not evidence.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)


class WebhookRejected(Exception):
    """The delivery is refused: 400 malformed, 403 bad/missing/stale signature, 413 too big, 503 not configured."""

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


def header(request, name):
    """`request.headers.get(name)` read from META: the ack path never builds the mapping of every header
    (~13 us per delivery) for the two or three it needs."""
    return request.META.get(HttpHeaders.to_wsgi_name(name))


def safe_headers(request, names):
    """The named request headers (those present), minus credentials such as Authorization.

    Signature headers (Stripe-Signature, X-Twilio-Signature) may be kept for
    audit: they are digests, not the shared secret.
    """
    kept = {}
    for name in names:
        if name.lower() in SECRET_HEADERS:
            continue
        value = header(request, name)
        if value is not None:
            kept[name] = value
    return kept


def body_too_big(request):
    """Refuse oversized bodies before anything parses them: first by the declared length, then the real one.

    The inbox runs it first, and check_envelope again for verifiers whose view calls them directly.
    """
    limit = settings.WEBHOOK_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return True
    try:
        return len(request.body) > limit
    except RequestDataTooBig:  # above DATA_UPLOAD_MAX_MEMORY_SIZE
        return True


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
    except RecursionError:  # nested deeper than the decoder goes: not an event any provider sends
        raise WebhookRejected(400, "malformed_body", "The body's JSON is nested too deeply.") from None
    if not isinstance(data, dict):
        raise WebhookRejected(400, "malformed_body", "The body must be a JSON object.")
    return data


def secrets_from(setting_name):
    """The secrets in a setting: one, or several separated by commas while a rotation overlaps (newest first)."""
    value = getattr(settings, setting_name, "") or ""
    return [s.strip() for s in value.split(",") if s.strip()]


class WebhookVerifier:
    """The base of every provider's webhook verifier: the shared checks and one status policy.

    An instance is the `verify(request)` the inbox calls. It runs, in order:

    1. size: a body above WEBHOOK_MAX_BYTES                   -> 413 payload_too_large
    2. content type: not one of `content_types`               -> 400 unsupported_content_type
    3. secret lookup: no secret configured                    -> 503 webhook_not_configured
    4. signature header missing                               -> 403 missing_signature
    5. signature checked against each configured secret (a rotation keeps the old
       and the new one side by side, comma-separated)         -> 403 bad_signature
    6. replay window, where the provider signs a timestamp    -> 403 stale_signature
    7. `parse(request)` into InboundEvent(s); anything malformed -> 400 (WebhookRejected from parse)

    A subclass sets `provider`, `secret_setting`, `signature_header`,
    `content_types`, `tolerance_seconds` (None: no timestamp is signed) and
    implements `signature_matches(request, signature, secret)`, `parse(request)`
    and, with a tolerance, `signed_at(request, signature)` (Unix seconds or None).
    Secrets are compared by the SDK's validator or `signatures_match` (constant time).
    """

    provider = ""
    secret_setting = ""
    signature_header = ""
    content_types = ("application/json",)
    tolerance_seconds = None

    def __call__(self, request):
        self.check_envelope(request)
        secrets = self.secrets()
        if not secrets:
            raise WebhookRejected(
                503, "webhook_not_configured", f"This webhook is not configured; set {self.secret_setting} on the hub."
            )
        signature = header(request, self.signature_header)
        if not signature:
            raise WebhookRejected(403, "missing_signature", f"The {self.signature_header} header is missing.")
        if not any(self.signature_matches(request, signature, secret) for secret in secrets):
            raise WebhookRejected(403, "bad_signature", self.bad_signature_detail())
        if self.tolerance_seconds is not None:
            signed_at = self.signed_at(request, signature)
            if signed_at is None or abs(time.time() - signed_at) > self.tolerance_seconds:
                raise WebhookRejected(
                    403,
                    "stale_signature",
                    f"The signature's timestamp is more than {self.tolerance_seconds} s away from now; "
                    "a replayed or delayed delivery is refused.",
                )
        return self.parse(request)

    def check_envelope(self, request):
        """Steps 1 and 2 (size, content type): verifiers whose secret is not a header reuse them."""
        if body_too_big(request):
            raise WebhookRejected(
                413,
                "payload_too_large",
                f"The body exceeds the hub's webhook limit of {settings.WEBHOOK_MAX_BYTES} bytes.",
            )
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        if self.content_types and media_type not in self.content_types:
            raise WebhookRejected(
                400,
                "unsupported_content_type",
                f"{self.provider} webhooks are sent as {' or '.join(self.content_types)}, not {media_type or 'nothing'}.",
            )

    def secrets(self):
        return secrets_from(self.secret_setting)

    def bad_signature_detail(self):
        return f"The {self.signature_header} does not match the body and {self.secret_setting}."

    def signature_matches(self, request, signature, secret):
        raise NotImplementedError

    def signed_at(self, request, signature):
        raise NotImplementedError

    def parse(self, request):
        raise NotImplementedError
