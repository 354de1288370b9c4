"""Inbound voice, answered synchronously with TwiML: business hours, forwarding rules, fallback, voicemail."""

from django.utils import timezone

from .. import business_hours
from ..models import CallLog, ForwardingRule
from ..providers import twiml
from .calls import CALL_STATUS
from .common import public_url


def _voicemail(call, schedule, routing):
    CallLog.objects.filter(pk=call.pk).update(routing=routing, voicemail=True)
    return twiml.voicemail(
        greeting=schedule.greeting,
        recording_url=public_url("twilio_webhooks:recording"),
        transcription_url=public_url("twilio_webhooks:transcription"),
        done_url=public_url("twilio_webhooks:voice-dial", stage="voicemail"),
    )


def voice_answer(*, payload, now=None):
    """TwiML for an incoming call: forward in hours by rule, else voicemail with transcription."""
    now = now or timezone.now()
    sid = payload.get("CallSid", "")
    call, _ = CallLog.objects.get_or_create(
        external_id=sid,
        defaults={
            "direction": CallLog.Direction.INBOUND,
            "from_number": payload.get("From", ""),
            "to_number": payload.get("To", ""),
            "status": CALL_STATUS.get(payload.get("CallStatus", ""), "ringing"),
            "twilio_status": payload.get("CallStatus", ""),
            "raw": payload,
        },
    )
    schedule = business_hours.schedule_current()
    state = business_hours.status_at(schedule, now)
    if state != business_hours.OPEN:
        return _voicemail(call, schedule, state)
    rule = business_hours.rule_for(caller=call.from_number, when=now, schedule=schedule)
    if rule is None:
        return _voicemail(call, schedule, "no_rule")
    CallLog.objects.filter(pk=call.pk).update(routing="forward", forwarding_rule=rule, forwarded_to=rule.target_number)
    return twiml.forward(
        number=rule.target_number,
        ring_timeout=rule.ring_timeout,
        action_url=public_url("twilio_webhooks:voice-dial", rule=rule.pk, stage="primary"),
    )


ANSWERED = frozenset({"completed", "answered"})


def voice_dial_result(*, payload):
    """After <Dial>: hang up if someone answered, else the rule's fallback number once, then voicemail; after the
    voicemail's <Record> (stage=voicemail): hang up, the message is in (its recording callback books it)."""
    query = payload.get("_query") or {}
    if query.get("stage") == "voicemail":
        return twiml.hangup()
    call = CallLog.objects.filter(external_id=payload.get("CallSid", "")).first()
    schedule = business_hours.schedule_current()
    if payload.get("DialCallStatus") in ANSWERED:
        return twiml.hangup()
    if call is None:
        call = CallLog.objects.create(
            external_id=payload.get("CallSid", ""),
            direction=CallLog.Direction.INBOUND,
            from_number=payload.get("From", ""),
            to_number=payload.get("To", ""),
            status="ringing",
        )

    rule = ForwardingRule.objects.filter(pk=query.get("rule") if str(query.get("rule", "")).isdigit() else None).first()
    if query.get("stage") == "primary" and rule is not None and rule.fallback_number:
        CallLog.objects.filter(pk=call.pk).update(routing="fallback", forwarded_to=rule.fallback_number)
        return twiml.forward(
            number=rule.fallback_number,
            ring_timeout=rule.ring_timeout,
            action_url=public_url("twilio_webhooks:voice-dial", rule=rule.pk, stage="fallback"),
        )
    return _voicemail(call, schedule, "no_answer")
