"""Twilio callbacks through the shared inbox: verify X-Twilio-Signature, store once, handle.

Twilio signs the exact URL it called plus the sorted POST parameters with the
account's auth token. We rebuild that URL from APP_URL (what Twilio sees)
rather than from the request's Host and scheme, which a proxy rewrites.

Status callbacks are de-duplicated on (SID, status): Twilio's retries of one
callback and a second copy of the same status insert nothing. Voice webhooks
answer TwiML in the request but are verified and stored the same way.
"""

import hashlib
import logging

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.webhooks import (
    InboundEvent,
    WebhookIgnored,
    WebhookRejected,
    WebhookVerifier,
    receive_webhook,
    safe_headers,
    secrets_from,
    webhook_handler,
)

from . import services
from .providers import twilio_rest, twiml

logger = logging.getLogger(__name__)

PROVIDER = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
KEPT_HEADERS = [SIGNATURE_HEADER, "I-Twilio-Idempotency-Token", "User-Agent", "Content-Type"]


def signed_url(request):
    """The URL Twilio requested, as Twilio saw it: APP_URL + path + the raw query string."""
    query = request.META.get("QUERY_STRING", "")
    return settings.APP_URL + request.path_info + (f"?{query}" if query else "")


def _payload(request):
    payload = {k: v for k, v in request.POST.items()}
    if request.GET:
        payload["_query"] = {k: v for k, v in request.GET.items()}
    return payload


# (event type, fields naming one event). The last field is the status, so a
# new status is a new event and a repeated one is a duplicate.
KINDS = {
    "sms.status": ("MessageSid", "MessageStatus"),
    "call.status": ("CallSid", "CallStatus"),
    "sms.inbound": ("MessageSid",),
    "voice.inbound": ("CallSid",),
    "voice.dial": ("CallSid", "DialCallStatus"),
    "recording.status": ("RecordingSid", "RecordingStatus"),
    "transcription": ("TranscriptionSid", "TranscriptionStatus"),
}


class TwilioVerifier(WebhookVerifier):
    """`X-Twilio-Signature` over the public URL and the POST parameters, checked by the SDK's validator.

    Twilio signs with the account's auth token; during a rotation
    TWILIO_WEBHOOK_PREVIOUS_AUTH_TOKENS (comma-separated) are accepted too.
    Twilio signs no timestamp, so there is no replay window: duplicates are
    caught by the inbox's (SID, status) event ids instead.
    """

    provider = PROVIDER
    secret_setting = "TWILIO_AUTH_TOKEN"
    signature_header = SIGNATURE_HEADER
    content_types = ("application/x-www-form-urlencoded",)

    def __init__(self, event_type):
        self.event_type = event_type
        self.fields = KINDS[event_type]

    def secrets(self):
        current = [settings.TWILIO_AUTH_TOKEN] if settings.TWILIO_AUTH_TOKEN else []
        return current + secrets_from("TWILIO_WEBHOOK_PREVIOUS_AUTH_TOKENS") if current else []

    def bad_signature_detail(self):
        return "The X-Twilio-Signature does not match; check TWILIO_AUTH_TOKEN and that APP_URL is the public URL."

    def signature_matches(self, request, signature, secret):
        return twilio_rest.signature_valid(
            url=signed_url(request), params=request.POST, signature=signature, token=secret
        )

    def parse(self, request):
        payload = _payload(request)
        values = [payload.get(f) for f in self.fields]
        if self.event_type == "voice.dial":
            values.append((payload.get("_query") or {}).get("stage", ""))
        if not all(values[:1]):
            # No SID of its own (a recording callback before the recording has one): it must at least
            # name its call or message, and it is de-duplicated on what Twilio signed (the URL and every
            # POST parameter), never on the unsigned I-Twilio-Idempotency-Token header, which a
            # replayer can change at will.
            if not (payload.get("CallSid") or payload.get("MessageSid")):
                raise WebhookRejected(400, "malformed_event", f"The callback has no {self.fields[0]}.")
            values = ["signed", _signed_digest(request)]
        return InboundEvent(
            event_id=":".join([self.event_type, *[str(v or "") for v in values]])[:255],
            type=self.event_type,
            payload=payload,
            headers=safe_headers(request, KEPT_HEADERS),
        )


def _signed_digest(request):
    """SHA-256 over exactly what X-Twilio-Signature covers: the public URL, then each parameter name+value, sorted."""
    digest = hashlib.sha256(signed_url(request).encode())
    for name in sorted(request.POST):
        for value in request.POST.getlist(name):
            digest.update(f"\0{name}\0{value}".encode())
    return digest.hexdigest()


def _xml(body):
    return HttpResponse(body, content_type="text/xml; charset=utf-8")


def _view(event_type, respond=None):
    verify = TwilioVerifier(event_type)

    @csrf_exempt  # Twilio cannot send a CSRF token; the signature authenticates it
    def view(request):
        return receive_webhook(request, provider=PROVIDER, verify=verify, respond=respond)

    view.__name__ = f"twilio_{event_type.replace('.', '_')}_webhook"
    return view


def _voice_respond(event, created):
    return _xml(services.voice_answer(payload=event.payload))


def _dial_respond(event, created):
    return _xml(services.voice_dial_result(payload=event.payload))


def _sms_respond(event, created):
    return _xml(twiml.empty_messaging())


sms_status = _view("sms.status")
call_status = _view("call.status")
sms_inbound = _view("sms.inbound", respond=_sms_respond)
voice_inbound = _view("voice.inbound", respond=_voice_respond)
voice_dial = _view("voice.dial", respond=_dial_respond)
recording = _view("recording.status")
transcription = _view("transcription")


def _run(fn, event):
    try:
        return fn(payload=event.payload)
    except services.StaleEvent as exc:
        raise WebhookIgnored(str(exc)) from exc


def _status_callback(apply, event, *, ref, not_ours):
    """A status callback for a row the hub may not have stamped with Twilio's SID yet."""
    try:
        _run(apply, event)
    except services.UnknownObject as exc:
        if not (event.payload.get("_query") or {}).get(ref):
            raise WebhookIgnored(f"{exc} ({not_ours})") from exc
        raise  # ours (the URL names our row), but the task has not stored the SID yet: retried with backoff


@webhook_handler(PROVIDER, "sms.status")
def on_sms_status(event):
    _status_callback(services.sms_status_apply, event, ref="sms", not_ours="not sent by the hub")


@webhook_handler(PROVIDER, "call.status")
def on_call_status(event):
    _status_callback(services.call_status_apply, event, ref="call", not_ours="not placed or answered by the hub")


@webhook_handler(PROVIDER, "sms.inbound")
def on_sms_inbound(event):
    services.sms_inbound_record(payload=event.payload)


@webhook_handler(PROVIDER, "voice.inbound", "voice.dial")
def on_voice(event):
    """The TwiML answer already did the work in the request; the event is the audit record."""


@webhook_handler(PROVIDER, "recording.status")
def on_recording(event):
    _run(services.recording_attach, event)


@webhook_handler(PROVIDER, "transcription")
def on_transcription(event):
    _run(services.transcription_attach, event)
