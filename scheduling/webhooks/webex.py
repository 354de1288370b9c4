"""Webex webhooks through the shared inbox: POST /webhooks/webex/.

Verification (developer.webex.com/docs/webhooks, "Handling Requests from
Webex"): Webex signs the raw body with HMAC-SHA1 keyed by the secret the hub
gave when it registered the webhook, and sends the hex digest as
`X-Spark-Signature`; WEBEX_WEBHOOK_SECRET may hold two secrets, comma-separated,
while a rotation overlaps. Webex signs no timestamp, so there is no replay
window: a replayed body is the same event (its id is a digest of the body) and
is stored once, and the handlers below are safe to run again or late.

Events (`resource.event`): meetings.started / ended / deleted move the meeting
through its state machine with the event's own time, so a late `started` never
reopens an ended or cancelled meeting; meetingParticipants.joined / left only
widen the attendance window; recordings.created books the recording. Webex
names a meeting occurrence `{series id}_I_{n}`; the hub's meeting is the series.
A meeting the hub did not create is ignored.
"""

import hashlib
import hmac

from integrations.webhooks import (
    InboundEvent,
    WebhookIgnored,
    WebhookRejected,
    WebhookVerifier,
    json_body,
    safe_headers,
    signatures_match,
    webhook_handler,
    webhook_ordering_key,
    webhook_verifier,
)

from .. import lifecycle, services
from ..models import Meeting
from ..providers import webex

PROVIDER = "webex"
SIGNATURE_HEADER = "X-Spark-Signature"


class WebexVerifier(WebhookVerifier):
    provider = PROVIDER
    secret_setting = "WEBEX_WEBHOOK_SECRET"
    signature_header = SIGNATURE_HEADER
    content_types = ("application/json",)
    tolerance_seconds = None  # Webex signs no timestamp

    def signature_matches(self, request, signature, secret):
        expected = hmac.new(secret.encode(), request.body, hashlib.sha1).hexdigest()
        return signatures_match(expected, signature.strip().lower())

    def parse(self, request):
        body = json_body(request)
        resource, event, data = body.get("resource"), body.get("event"), body.get("data")
        if not isinstance(resource, str) or not isinstance(event, str) or not isinstance(data, dict):
            raise WebhookRejected(400, "malformed_event", "A Webex webhook has a resource, an event and a data object.")
        return InboundEvent(
            event_id=hashlib.sha256(request.body).hexdigest(),
            type=f"{resource}.{event}",
            payload=body,
            occurred_at=services.parse_time(_event_time(resource, event, data)),
            headers=safe_headers(request, [SIGNATURE_HEADER, "User-Agent", "TrackingID"]),
        )


def _event_time(resource, event, data):
    if resource == "meetings":
        return data.get("end") if event == "ended" else data.get("start") if event == "started" else None
    if resource == "meetingParticipants":
        return data.get("leftTime") if event == "left" else data.get("joinedTime")
    return data.get("createTime")


verify = webhook_verifier(PROVIDER)(WebexVerifier())


def _series(data):
    series = data.get("meetingSeriesId") or data.get("meetingId") or data.get("id") or ""
    return str(series).split("_", 1)[0]


@webhook_ordering_key(PROVIDER)
def _meeting_of(payload):
    return _series(payload.get("data") or {})


def _meeting(event):
    data = event.payload.get("data") or {}
    meeting = lifecycle.meeting_for_event(PROVIDER, _series(data))
    if meeting is None:
        raise WebhookIgnored(f"no hub meeting with Webex id {_series(data)!r}")
    return meeting, data


@webhook_handler(PROVIDER, "meetings.started")
def on_started(event):
    meeting, data = _meeting(event)
    lifecycle.meeting_moved(
        meeting=meeting,
        status=Meeting.Status.STARTED,
        occurred_at=event.occurred_at,
        when=services.parse_time(data.get("start")),
    )


@webhook_handler(PROVIDER, "meetings.ended")
def on_ended(event):
    meeting, data = _meeting(event)
    lifecycle.meeting_moved(
        meeting=meeting,
        status=Meeting.Status.ENDED,
        occurred_at=event.occurred_at,
        when=services.parse_time(data.get("end")),
    )


@webhook_handler(PROVIDER, "meetings.deleted")
def on_deleted(event):
    meeting, _ = _meeting(event)
    lifecycle.meeting_moved(meeting=meeting, status=Meeting.Status.CANCELLED, occurred_at=event.occurred_at)


@webhook_handler(PROVIDER, "meetingParticipants.joined", "meetingParticipants.left")
def on_participant(event):
    meeting, data = _meeting(event)
    lifecycle.attendance_record(
        meeting=meeting,
        key=data.get("id") or data.get("email"),
        email=data.get("email") or "",
        name=data.get("displayName") or "",
        joined_at=services.parse_time(data.get("joinedTime")),
        left_at=services.parse_time(data.get("leftTime")) if event.type == "meetingParticipants.left" else None,
    )


@webhook_handler(PROVIDER, "recordings.created")
def on_recording(event):
    meeting, data = _meeting(event)
    services.recordings_upsert(meeting=meeting, files=[webex.recording_file(data)])


@webhook_handler(PROVIDER, "*")
def on_other(event):
    raise WebhookIgnored(f"the hub does not act on Webex's {event.type}")
