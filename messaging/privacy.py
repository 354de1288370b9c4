"""What messaging holds about a user (privacy registry): SMS, calls, recordings and transcriptions at Twilio."""

from django.utils import timezone

from integrations.states import transition
from privacy.erasure import gave_up_alerts_redact
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
    """Recordings, transcriptions and the media files of MMS deleted at Twilio first, and the bodies of the
    user's messages redacted there (404 = already gone), then the rows. A failing call fails this holder: the
    erasure retries it later (privacy.erasure). A message is erased at Twilio and deleted in the hub one at a
    time, so a retry asks Twilio only about the messages a run has not finished."""
    cancel_pending(user, report)
    # Before any row goes: the alerts are found by the ids of the user's rows.
    report.count("integrations.Alert.redacted", _redact_gave_up_alerts(user))
    at_twilio = SmsMessage.objects.filter(owner=user).exclude(external_id=None).exclude(external_id="")
    last_pk = 0
    while batch := list(at_twilio.filter(pk__gt=last_pk).order_by("pk").only("pk", "external_id", "num_media")[:200]):
        for sms in batch:
            _erase_message_at_twilio(sms, report)
            # Its media and text are gone at Twilio: the row goes now, so a retry after a later message's failure
            # does not list, redact and count this one again (a call per message per retry otherwise).
            report.count("messaging.SmsMessage", SmsMessage.objects.filter(pk=sms.pk).delete()[0])
        last_pk = batch[-1].pk
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
    report.count("integrations.Alert.redacted", _redact_gave_up_alerts(user))  # a task that gave up meanwhile
    report.count("messaging.SmsMessage", SmsMessage.objects.filter(owner=user).delete()[0])
    report.count("messaging.CallLog", CallLog.objects.filter(owner=user).delete()[0])
    report.count("messaging.Conversation", Conversation.objects.filter(owner=user).delete()[0])


def _erase_message_at_twilio(sms, report):
    # The files an MMS came with stay at Twilio (num_media: the hub keeps only the count), readable with the
    # account's credentials until deleted: the user's pictures must not outlive the rows that point at them.
    if sms.num_media:
        deleted = twilio_rest.message_media_delete(sid=sms.external_id, related=sms)
        report.provider_count("twilio.message_media", "deleted" if deleted else "already_gone")
    # Twilio keeps every message's text in its Message record (Console, API, its support staff) whatever the hub
    # deletes. Redacted rather than deleted: Twilio documents an empty Body as removing the text while the record
    # stays, with the status and price Twilio bills on and the hub's cost booking and reconciliation read (a
    # deleted record also refuses while Twilio still processes it, 20009). Inbound and outbound alike.
    redacted = twilio_rest.message_redact(sid=sms.external_id, related=sms)
    report.provider_count("twilio.message_bodies", "redacted" if redacted else "already_gone")


# The tasks whose first argument is one of this app's rows. Their "gave up" alert (ProviderTask.on_failure) quotes
# Twilio's refusal, which names the number the user texted or called ("The 'To' number +1... is not valid").
_TASK_ROWS = {
    "messaging.sms_send": SmsMessage,
    "messaging.sms_price_fetch": SmsMessage,
    "messaging.call_place": CallLog,
    "messaging.call_price_fetch": CallLog,
}


def _redact_gave_up_alerts(user):
    mine = {
        model: set(model.objects.filter(owner=user).values_list("pk", flat=True)) for model in (SmsMessage, CallLog)
    }
    return gave_up_alerts_redact(rows={name: mine[model] for name, model in _TASK_ROWS.items()})


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
            "SMS you sent and received (numbers, bodies, which Twilio also stores; the pictures of an MMS), calls "
            "(numbers, what was said, recordings and transcriptions, which Twilio stores)."
        ),
        retention=(
            "until erasure (SMS bodies per the retention policy); recordings, MMS media and SMS bodies at Twilio until "
            "erasure."
        ),
    )
)
