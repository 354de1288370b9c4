"""Zoom's webhooks: verified, stored once in the inbox, then applied to meetings.

Verification (https://developers.zoom.us/docs/api/webhooks/), a WebhookVerifier
(the shared checks and status policy; ZOOM_WEBHOOK_SECRET_TOKEN may hold two
tokens, comma-separated, while a rotation overlaps): Zoom signs
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

import hashlib

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.webhooks import (
    InboundEvent,
    WebhookIgnored,
    WebhookRejected,
    WebhookVerifier,
    epoch_datetime,
    hmac_sha256_hex,
    json_body,
    receive_webhook,
    safe_headers,
    signatures_match,
    webhook_handler,
    webhook_ordering_key,
    webhook_verifier,
)

from .. import lifecycle, services
from ..models import Meeting
from ..providers import zoom

PROVIDER = "zoom"


class ZoomVerifier(WebhookVerifier):
    """`x-zm-signature: v0=<hex HMAC-SHA256(secret, "v0:{x-zm-request-timestamp}:{body}")>`; a replay window."""

    provider = PROVIDER
    secret_setting = "ZOOM_WEBHOOK_SECRET_TOKEN"
    signature_header = "x-zm-signature"
    content_types = ("application/json",)

    @property
    def tolerance_seconds(self):
        return settings.ZOOM_WEBHOOK_TOLERANCE_SECONDS

    def signature_matches(self, request, signature, secret):
        stamp = request.headers.get("x-zm-request-timestamp", "")
        if not stamp:
            return False
        expected = "v0=" + hmac_sha256_hex(secret, b"v0:" + stamp.encode() + b":" + request.body)
        return signatures_match(expected, signature)

    def signed_at(self, request, signature):
        try:
            return int(request.headers.get("x-zm-request-timestamp", ""))
        except ValueError:
            return None

    def matching_secret(self, request):
        """The configured secret that signed this request (the URL validation answers with it), or None."""
        signature = request.headers.get(self.signature_header, "")
        return next((s for s in self.secrets() if signature and self.signature_matches(request, signature, s)), None)

    def parse(self, request):
        body = json_body(request)
        event, payload = body.get("event"), body.get("payload")
        if not isinstance(event, str) or not isinstance(payload, dict):
            raise WebhookRejected(400, "malformed_body", "A Zoom event has an `event` name and a `payload` object.")
        ts = body.get("event_ts")
        return InboundEvent(
            # Zoom events carry no id of their own; a redelivery is the same body.
            event_id=hashlib.sha256(request.body).hexdigest(),
            type=event,
            payload=body,
            occurred_at=epoch_datetime(ts / 1000) if isinstance(ts, int) and not isinstance(ts, bool) else None,
            headers=safe_headers(request, ["x-zm-request-timestamp", "x-zm-signature", "x-zm-trackingid"]),
        )


VERIFIER = ZoomVerifier()
verify_zoom = webhook_verifier(PROVIDER)(VERIFIER)


@csrf_exempt
def zoom_webhook(request):
    """POST /webhooks/zoom/: the URL validation challenge is answered here; every other event goes to the inbox."""
    if request.method == "POST" and b"endpoint.url_validation" in request.body[:200]:
        try:
            event = VERIFIER(request)  # the same checks, in the same order, as any delivery
        except WebhookRejected as exc:
            return JsonResponse({"error": exc.code, "detail": exc.detail}, status=exc.status)
        plain = (event.payload.get("payload") or {}).get("plainToken")
        secret = VERIFIER.matching_secret(request)
        if event.type == "endpoint.url_validation" and isinstance(plain, str) and plain and secret:
            return JsonResponse({"plainToken": plain, "encryptedToken": hmac_sha256_hex(secret, plain)})
    return receive_webhook(request, provider=PROVIDER, verify=verify_zoom)


@webhook_ordering_key(PROVIDER)
def _meeting_of(payload):
    obj = (payload.get("payload") or {}).get("object") or {}
    return str(obj.get("id", ""))


def _meeting(event):
    obj = (event.payload.get("payload") or {}).get("object") or {}
    meeting = lifecycle.meeting_for_event(PROVIDER, obj.get("id", ""))
    if meeting is None:
        raise WebhookIgnored(f"no hub meeting with Zoom id {obj.get('id')!r}")
    return meeting, obj


def _time(value):
    return services.parse_time(value)


@webhook_handler(PROVIDER, "meeting.started")
def on_started(event):
    meeting, obj = _meeting(event)
    lifecycle.meeting_moved(
        meeting=meeting, status=Meeting.Status.STARTED, occurred_at=event.occurred_at, when=_time(obj.get("start_time"))
    )


@webhook_handler(PROVIDER, "meeting.ended")
def on_ended(event):
    meeting, obj = _meeting(event)
    lifecycle.meeting_moved(
        meeting=meeting, status=Meeting.Status.ENDED, occurred_at=event.occurred_at, when=_time(obj.get("end_time"))
    )


@webhook_handler(PROVIDER, "meeting.deleted")
def on_deleted(event):
    meeting, _ = _meeting(event)
    lifecycle.meeting_moved(meeting=meeting, status=Meeting.Status.CANCELLED, occurred_at=event.occurred_at)


@webhook_handler(PROVIDER, "meeting.participant_joined", "meeting.participant_left")
def on_participant(event):
    meeting, obj = _meeting(event)
    person = obj.get("participant") or {}
    lifecycle.attendance_record(
        meeting=meeting,
        # participant_uuid is stable across a person's rejoins; older payloads have only the ids.
        key=person.get("participant_uuid") or person.get("id") or person.get("email") or person.get("user_id"),
        email=person.get("email") or "",
        name=person.get("user_name") or "",
        joined_at=_time(person.get("join_time")),
        left_at=_time(person.get("leave_time")) if event.type == "meeting.participant_left" else None,
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
