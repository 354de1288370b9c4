"""Zoom's webhooks: verified, stored once in the inbox, then applied to meetings.

Verification (https://developers.zoom.us/docs/api/webhooks/): Zoom signs
`v0:{x-zm-request-timestamp}:{raw body}` with HMAC-SHA256 keyed by the app's
Secret Token and sends `x-zm-signature: v0=<hex>`. A delivery older than
ZOOM_WEBHOOK_TOLERANCE_SECONDS is a replay (403). The `endpoint.url_validation`
challenge (when the URL is saved, then every 72 h) is answered synchronously
with `{"plainToken", "encryptedToken": hex HMAC-SHA256(secret, plainToken)}`.

Zoom events carry no id of their own; a redelivery is the same body, so the
event id is a digest of it. Ordering: handlers move meetings through the
state machine with the event's time (`event_ts`), so a late `meeting.started`
never reopens a meeting that ended or was cancelled, and participant times only
ever widen the attendance window. A meeting the hub did not create is ignored.
"""

import datetime as dt
import hashlib
import time

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.webhooks import (
    InboundEvent,
    WebhookIgnored,
    WebhookRejected,
    hmac_sha256_hex,
    json_body,
    receive_webhook,
    safe_headers,
    signatures_match,
    webhook_handler,
    webhook_ordering_key,
    webhook_secret,
)

from . import services
from .models import Meeting
from .providers import zoom

PROVIDER = "zoom"


def _check_signature(request):
    secret = webhook_secret("ZOOM_WEBHOOK_SECRET_TOKEN")
    stamp = request.headers.get("x-zm-request-timestamp", "")
    received = request.headers.get("x-zm-signature", "")
    if not stamp or not received:
        raise WebhookRejected(403, "missing_signature", "x-zm-signature and x-zm-request-timestamp are required.")
    try:
        age = abs(time.time() - int(stamp))
    except ValueError:
        raise WebhookRejected(403, "invalid_signature", "x-zm-request-timestamp is not a Unix time.") from None
    expected = "v0=" + hmac_sha256_hex(secret, b"v0:" + stamp.encode() + b":" + request.body)
    if not signatures_match(expected, received):
        raise WebhookRejected(403, "invalid_signature", "The x-zm-signature does not match this body.")
    if age > settings.ZOOM_WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRejected(403, "stale_signature", "The delivery is older than the hub accepts; it may be a replay.")
    return secret


def verify_zoom(request):
    _check_signature(request)
    body = json_body(request)
    event, payload = body.get("event"), body.get("payload")
    if not isinstance(event, str) or not isinstance(payload, dict):
        raise WebhookRejected(400, "malformed_body", "A Zoom event has an `event` name and a `payload` object.")
    ts = body.get("event_ts")
    return InboundEvent(
        event_id=hashlib.sha256(request.body).hexdigest(),
        type=event,
        payload=body,
        occurred_at=dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC) if isinstance(ts, int) else None,
        headers=safe_headers(request, ["x-zm-request-timestamp", "x-zm-signature", "x-zm-trackingid"]),
    )


@csrf_exempt
def zoom_webhook(request):
    """POST /webhooks/zoom/: the URL validation challenge is answered here; every other event goes to the inbox."""
    if request.method == "POST" and b"endpoint.url_validation" in request.body[:200]:
        try:
            secret = _check_signature(request)
            body = json_body(request)
        except WebhookRejected as exc:
            return JsonResponse({"error": exc.code, "detail": exc.detail}, status=exc.status)
        plain = (body.get("payload") or {}).get("plainToken")
        if body.get("event") == "endpoint.url_validation" and isinstance(plain, str) and plain:
            return JsonResponse({"plainToken": plain, "encryptedToken": hmac_sha256_hex(secret, plain)})
    return receive_webhook(request, provider=PROVIDER, verify=verify_zoom)


@webhook_ordering_key(PROVIDER)
def _meeting_of(payload):
    obj = (payload.get("payload") or {}).get("object") or {}
    return str(obj.get("id", ""))


def _meeting(event):
    obj = (event.payload.get("payload") or {}).get("object") or {}
    meeting = services.meeting_for_event(PROVIDER, obj.get("id", ""))
    if meeting is None:
        raise WebhookIgnored(f"no hub meeting with Zoom id {obj.get('id')!r}")
    return meeting, obj


def _time(value):
    return services.parse_time(value)


@webhook_handler(PROVIDER, "meeting.started")
def on_started(event):
    meeting, obj = _meeting(event)
    services.meeting_moved(
        meeting=meeting, status=Meeting.Status.STARTED, occurred_at=event.occurred_at, when=_time(obj.get("start_time"))
    )


@webhook_handler(PROVIDER, "meeting.ended")
def on_ended(event):
    meeting, obj = _meeting(event)
    services.meeting_moved(
        meeting=meeting, status=Meeting.Status.ENDED, occurred_at=event.occurred_at, when=_time(obj.get("end_time"))
    )


@webhook_handler(PROVIDER, "meeting.deleted")
def on_deleted(event):
    meeting, _ = _meeting(event)
    services.meeting_moved(meeting=meeting, status=Meeting.Status.CANCELLED, occurred_at=event.occurred_at)


@webhook_handler(PROVIDER, "meeting.participant_joined", "meeting.participant_left")
def on_participant(event):
    meeting, obj = _meeting(event)
    person = obj.get("participant") or {}
    services.attendance_record(
        meeting=meeting,
        email=(person.get("email") or "").lower(),
        name=person.get("user_name", ""),
        joined_at=_time(person.get("join_time")),
        left_at=_time(person.get("leave_time")),
    )


@webhook_handler(PROVIDER, "recording.completed")
def on_recording(event):
    meeting, obj = _meeting(event)
    services.recordings_upsert(
        meeting=meeting, files=[zoom.recording_file(f) for f in obj.get("recording_files") or []]
    )


@webhook_handler(PROVIDER, "*")
def on_other(event):
    raise WebhookIgnored(f"the hub does not act on Zoom's {event.type}")
