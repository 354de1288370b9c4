"""TwiML documents, built with the SDK's VoiceResponse / MessagingResponse."""

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse


def say(text):
    response = VoiceResponse()
    response.say(text)
    return str(response)


def forward(*, number, ring_timeout, action_url, caller_id=None):
    """Ring `number`; Twilio then posts DialCallStatus to `action_url`, which decides what follows."""
    response = VoiceResponse()
    dial = response.dial(timeout=ring_timeout, action=action_url, method="POST", caller_id=caller_id)
    dial.number(number)
    return str(response)


def voicemail(*, greeting, recording_url, transcription_url, done_url, max_length=120):
    """The greeting, then a recorded message. Twilio requests `done_url` once the message is recorded and ignores
    the verbs after <Record> (without an action it requests this document again: the greeting over and over);
    the <Hangup/> is for an empty recording, after which Twilio carries on with the next verb instead."""
    response = VoiceResponse()
    response.say(greeting)
    response.record(
        action=done_url,
        method="POST",
        max_length=max_length,
        play_beep=True,
        transcribe=True,
        transcribe_callback=transcription_url,
        recording_status_callback=recording_url,
        recording_status_callback_method="POST",
    )
    response.hangup()
    return str(response)


def hangup():
    response = VoiceResponse()
    response.hangup()
    return str(response)


def empty_messaging():
    """An inbound SMS answered with no reply (Twilio's own opt-out handling replies to STOP/HELP)."""
    return str(MessagingResponse())
