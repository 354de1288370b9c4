"""What messaging holds about a user (privacy registry): SMS, calls, recordings and transcriptions at Twilio."""

from django.utils import timezone

from integrations.states import transition
from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .models import CallLog, Conversation, SmsMessage
from .providers import twilio_rest


def export_messaging(user, out):
    calls = CallLog.objects.filter(owner=user)
    out.json(
        "messaging",
        {
            "conversations": rows(Conversation.objects.filter(owner=user), exclude=("owner",)),
            "sms": rows(SmsMessage.objects.filter(owner=user), exclude=("owner",)),
            "calls": rows(calls, exclude=("owner",)),
        },
        description="Your SMS (bodies, numbers, status, price), calls (numbers, duration, price, transcripts).",
    )
    recorded = calls.exclude(recording_sid="").order_by("pk")
    for call in recorded.iterator(chunk_size=200):
        arcname = f"recordings/call-{call.pk}-{call.recording_sid}.mp3"
        twilio_rest.recording_media(
            sid=call.recording_sid,
            consume=lambda chunks, arcname=arcname: out.file(arcname, chunks),
            owner=user,
            related=call,
        )
    if recorded.exists():
        out.files.append(("recordings/", "Call recordings, fetched from Twilio: recordings/call-<call id>-<sid>.mp3"))


def cancel_pending(user, report):
    """At once: SMS and calls still waiting in the hub are cancelled (a queued task finds them cancelled)."""
    n = 0
    for pk in SmsMessage.objects.filter(owner=user, status=SmsMessage.Status.QUEUED).values_list("pk", flat=True):
        n += transition(SmsMessage, pk, SmsMessage.Status.CANCELED, frm=SmsMessage.Status.QUEUED)
    report.count("messaging.SmsMessage.cancelled", n)
    n = 0
    for pk in CallLog.objects.filter(owner=user, status=CallLog.Status.QUEUED).values_list("pk", flat=True):
        n += transition(CallLog, pk, CallLog.Status.CANCELED, frm=CallLog.Status.QUEUED)
    report.count("messaging.CallLog.cancelled", n)


def erase_messaging(user, report):
    """Recordings and transcriptions deleted at Twilio first (404 = already gone), then the rows."""
    cancel_pending(user, report)
    for call in CallLog.objects.filter(owner=user).exclude(recording_sid="", transcription_sid=""):
        if call.transcription_sid:
            gone = twilio_rest.transcription_delete(sid=call.transcription_sid, related=call)
            report.provider_count("twilio.transcriptions", "deleted" if gone else "already_gone")
        if call.recording_sid:
            gone = twilio_rest.recording_delete(sid=call.recording_sid, related=call)
            report.provider_count("twilio.recordings", "deleted" if gone else "already_gone")
        CallLog.objects.filter(pk=call.pk).update(
            recording_sid="", recording_url="", transcription_sid="", transcript="", updated_at=timezone.now()
        )
    report.count("messaging.SmsMessage", SmsMessage.objects.filter(owner=user).delete()[0])
    report.count("messaging.CallLog", CallLog.objects.filter(owner=user).delete()[0])
    report.count("messaging.Conversation", Conversation.objects.filter(owner=user).delete()[0])


def references(user):
    refs = set(SmsMessage.objects.filter(owner=user).exclude(external_id=None).values_list("external_id", flat=True))
    for sid, rec, tr in CallLog.objects.filter(owner=user).values_list(
        "external_id", "recording_sid", "transcription_sid"
    ):
        refs |= {sid, rec, tr}
    return refs - {"", None}


register(
    PrivacyHolder(
        app="messaging",
        models=("messaging.Conversation", "messaging.SmsMessage", "messaging.CallLog"),
        export=export_messaging,
        erase=erase_messaging,
        disconnect=cancel_pending,
        references=references,
        description=(
            "SMS you sent and received (numbers, bodies), calls (numbers, what was said, recordings and "
            "transcriptions, which Twilio stores)."
        ),
        retention="until erasure (SMS bodies per the retention policy); recordings at Twilio until erasure.",
    )
)
