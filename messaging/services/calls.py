"""Outbound calls: queue, place once, look up a lost call, status callbacks, billed price, recordings."""

import math

from django.conf import settings
from django.db import transaction

from integrations.errors import DomainError
from integrations.registry import require
from integrations.states import transition
from integrations.task_base import enqueue_on_commit

from ..models import CallLog
from ..providers import twilio_rest, twiml
from .common import StaleEvent, call_by_sid, public_url, refuse_own_number, row_for_callback
from .costs import price_estimate, price_record
from .create_once import CreateOnce


def call_create(*, owner, to, say, record=False):
    require("twilio")
    if not settings.TWILIO_PHONE_NUMBER:
        raise DomainError(
            503,
            "provider_not_configured",
            "Calls need TWILIO_PHONE_NUMBER (a messaging service cannot call).",
            provider="twilio",
            missing=["TWILIO_PHONE_NUMBER"],
        )
    refuse_own_number(to)
    from ..tasks import call_place

    with transaction.atomic():
        call = CallLog.objects.create(
            owner=owner,
            direction=CallLog.Direction.OUTBOUND,
            from_number=settings.TWILIO_PHONE_NUMBER,
            to_number=to,
            say=say,
            record=record,
        )
        enqueue_on_commit(call_place, call.pk)
    return call


# Every Twilio CallStatus (and the Dial verb's DialCallStatus words) -> our status.
CALL_STATUS = {
    "queued": "dialing",
    "initiated": "dialing",
    "ringing": "ringing",
    "in-progress": "in_progress",
    "answered": "in_progress",
    "completed": "completed",
    "busy": "busy",
    "no-answer": "no_answer",
    "failed": "failed",
    "canceled": "canceled",
}


class _CallCreate(CreateOnce):
    # A second phone call is worse than a second SMS: the same create-once path.

    def create(self, call, **addressed):
        return twilio_rest.call_place(
            twiml=twiml.say(call.say),
            status_callback=public_url("twilio_webhooks:call-status", call=call.pk),
            recording_callback=public_url("twilio_webhooks:recording"),
            record=call.record,
            **addressed,
        )

    def list_page(self, **filters):
        return twilio_rest.calls_list(**filters)

    def matches(self, call, listed):
        # Same To and From (listed so), placed through the API. A call carries no
        # body to compare, so another call between the same numbers in the window,
        # made outside the hub or by a row that has not stored its SID, can match too.
        return listed.direction == "outbound-api"

    def stamped_fields(self, call, result):
        fields = {"twilio_status": result.status}
        if result.duration_seconds is not None:
            fields["duration_seconds"] = result.duration_seconds
        return fields


CALL = _CallCreate(CallLog, working="dialing", done="placed", statuses=CALL_STATUS)


def call_place_run(*, call_id):
    """The place task's work: at most one call on Twilio per row (see create_once)."""
    return CALL.run(call_id)


# The call a lost create call left on Twilio (same To and From, outbound-api), or None.
call_lookup = CALL.lookup


def call_give_up(*, call_id, error):
    CALL.give_up(call_id, error)


def call_status_apply(*, payload):
    sid = payload.get("CallSid")
    twilio_status = payload.get("CallStatus", "")
    target = CALL_STATUS.get(twilio_status)
    if target is None:
        raise StaleEvent(f"unknown CallStatus {twilio_status!r}")
    ref = (payload.get("_query") or {}).get("call")
    call = row_for_callback(CallLog, sid=sid, ref=ref, what="call with CallSid")
    fields = {"twilio_status": twilio_status, "raw": payload}
    if payload.get("CallDuration") not in (None, ""):
        fields["duration_seconds"] = int(payload["CallDuration"])
    if target in ("failed",) and payload.get("ErrorCode"):
        fields["error_code"] = str(payload["ErrorCode"])[:16]
    if target == call.status:
        # queued -> initiated are both "dialing" to us: keep Twilio's word for it.
        CallLog.objects.filter(pk=call.pk).update(**fields)
        return target
    if call.status == "failed":
        # Only a call that failed without Twilio's SID (the place task gave up in doubt, read here before the
        # callback stamped it) is Twilio's to move on; a call Twilio itself failed stays failed.
        if call.external_id is not None:
            raise StaleEvent(f"{call.status} -> {target} is not a forward move")
        fields.update(error_code="", error_message="")
    if not transition(CallLog, call.pk, target, frm=call.status, **fields):
        raise StaleEvent(f"{call.status} -> {target} is not a forward move")
    if target in CallLog.FINAL and not call.cost_recorded:
        from ..tasks import call_price_fetch

        enqueue_on_commit(call_price_fetch, call.pk)
    return target


def call_price_record(*, call_id, final_try=False):
    """Book a finished call's minutes and billed price (or, on the final try, the table's estimate)."""
    return price_record(
        CallLog,
        call_id,
        fetch=lambda call, cost: twilio_rest.call_fetch(
            sid=call.external_id, owner=call.owner_id, related=call, cost=cost
        ),
        units=lambda call, result: {"minutes": math.ceil((result.duration_seconds or call.duration_seconds or 0) / 60)},
        estimate=lambda call, result, units: price_estimate("call.price", **units),
        final_try=final_try,
        stored=lambda call, result: {"duration_seconds": result.duration_seconds},
    )


def recording_attach(*, payload):
    call = call_by_sid(payload)
    if payload.get("RecordingStatus", "completed") != "completed":
        raise StaleEvent(f"recording {payload.get('RecordingStatus')}")
    duration = payload.get("RecordingDuration")
    CallLog.objects.filter(pk=call.pk).update(
        recording_sid=payload.get("RecordingSid", ""),
        recording_url=payload.get("RecordingUrl", ""),
        recording_duration=int(duration) if str(duration or "").isdigit() else None,
    )


def transcription_attach(*, payload):
    call = call_by_sid(payload)
    fields = {
        "transcription_sid": payload.get("TranscriptionSid", ""),
        "transcription_status": payload.get("TranscriptionStatus", ""),
        "transcript": payload.get("TranscriptionText", "") or "",
    }
    # The transcription callback also names the recording; keep it if that callback was lost.
    if not call.recording_url and payload.get("RecordingUrl"):
        fields.update(recording_sid=payload.get("RecordingSid", ""), recording_url=payload["RecordingUrl"])
    CallLog.objects.filter(pk=call.pk).update(**fields)
