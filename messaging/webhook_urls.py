"""Twilio's callbacks, mounted at /webhooks/twilio/ (the URLs given to Twilio)."""

from django.urls import path

from . import webhooks

app_name = "twilio_webhooks"

urlpatterns = [
    path("sms/", webhooks.sms_inbound, name="sms"),
    path("sms-status/", webhooks.sms_status, name="sms-status"),
    path("call-status/", webhooks.call_status, name="call-status"),
    path("voice/", webhooks.voice_inbound, name="voice"),
    path("voice/dial-status/", webhooks.voice_dial, name="voice-dial"),
    path("voice/recording/", webhooks.recording, name="recording"),
    path("voice/transcription/", webhooks.transcription, name="transcription"),
]
