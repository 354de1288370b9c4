"""A signing test provider ("hubtest") for the inbox's own tests; never mounted outside tests.

It follows the shape of Stripe's scheme: `X-Hubtest-Signature: t=<unix>,v1=<hex>`
where v1 = HMAC-SHA256(secret, "<t>.<body>"), with a 300 s tolerance.
"""

import json
import time
from datetime import UTC, datetime

from integrations.webhooks import (
    InboundEvent,
    WebhookRejected,
    hmac_sha256_hex,
    json_body,
    safe_headers,
    signatures_match,
    webhook_secret,
)

PROVIDER = "hubtest"
SECRET_SETTING = "HUBTEST_WEBHOOK_SECRET"
SECRET = "whsec_test_0123456789"
SIGNATURE_HEADER = "X-Hubtest-Signature"
TOLERANCE_SECONDS = 300


def sign(body, secret=SECRET, timestamp=None):
    t = int(time.time() if timestamp is None else timestamp)
    return f"t={t},v1={hmac_sha256_hex(secret, f'{t}.'.encode() + body)}"


def verify(request):
    secret = webhook_secret(SECRET_SETTING)
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        raise WebhookRejected(400, "missing_signature", f"The {SIGNATURE_HEADER} header is missing.")
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
        received = parts["v1"]
    except (KeyError, ValueError):
        raise WebhookRejected(400, "malformed_signature", f"The {SIGNATURE_HEADER} header is malformed.") from None
    if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
        raise WebhookRejected(403, "stale_signature", "The signature timestamp is outside the tolerance.")
    if not signatures_match(hmac_sha256_hex(secret, f"{timestamp}.".encode() + request.body), received):
        raise WebhookRejected(403, "bad_signature", "The signature does not match the body.")
    data = json_body(request)
    if not data.get("id") or not data.get("type"):
        raise WebhookRejected(400, "malformed_body", "The event needs an id and a type.")
    created = data.get("created")
    return InboundEvent(
        event_id=str(data["id"]),
        type=str(data["type"]),
        payload=data,
        occurred_at=datetime.fromtimestamp(created, tz=UTC) if isinstance(created, int) else None,
        headers=safe_headers(request, [SIGNATURE_HEADER, "User-Agent", "Content-Type", "Authorization"]),
    )


def event_body(event_id="evt_1", type="thing.updated", **extra):
    return json.dumps({"id": event_id, "type": type, "created": int(time.time()), **extra}).encode()
