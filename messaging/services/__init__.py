"""What the Twilio half of messaging does, by concern:

    sms.py          queue, send once, status callbacks, billed price, inbound messages
    calls.py        queue, place once, status callbacks, billed price, recordings, transcriptions
    voice.py        inbound calls answered with TwiML (business hours, forwarding, voicemail)
    optouts.py      STOP / START
    costs.py        the price table's estimate, billed-price booking, the unbooked-cost sweep
    create_once.py  the one create-at-most-once path SMS and calls share (Twilio takes no idempotency key)
    common.py       callback URLs and the callback errors

Views, tasks and webhook handlers all call these (through the names below).
Outbound calls to Twilio happen only in tasks (never inside
transaction.atomic()); webhook handlers only write rows and enqueue follow-up
tasks on commit.
"""

from .calls import (
    CALL_STATUS,
    call_create,
    call_give_up,
    call_lookup,
    call_place_run,
    call_price_record,
    call_status_apply,
    recording_attach,
    transcription_attach,
)
from .common import E164_RE, MAX_BODY, StaleEvent, UnknownObject, public_url
from .costs import costs_unbooked_sweep, price_estimate
from .create_once import IN_FLIGHT_MARGIN_SECONDS, LOOKUP_CLOCK_SKEW, SendInFlight
from .optouts import HELP_WORDS, START_WORDS, STOP_WORDS, opted_out, optout_apply
from .sms import (
    segments_estimate,
    sms_create,
    sms_error_describe,
    sms_give_up,
    sms_inbound_record,
    sms_lookup,
    sms_price_record,
    sms_requeue,
    sms_send,
    sms_status_apply,
    sms_unattributed_assign,
    sms_unattributed_candidates,
)
from .voice import ANSWERED, voice_answer, voice_dial_result

__all__ = [
    "ANSWERED",
    "CALL_STATUS",
    "E164_RE",
    "HELP_WORDS",
    "IN_FLIGHT_MARGIN_SECONDS",
    "LOOKUP_CLOCK_SKEW",
    "MAX_BODY",
    "START_WORDS",
    "STOP_WORDS",
    "SendInFlight",
    "StaleEvent",
    "UnknownObject",
    "call_create",
    "call_give_up",
    "call_lookup",
    "call_place_run",
    "call_price_record",
    "call_status_apply",
    "costs_unbooked_sweep",
    "opted_out",
    "optout_apply",
    "price_estimate",
    "public_url",
    "recording_attach",
    "segments_estimate",
    "sms_create",
    "sms_error_describe",
    "sms_give_up",
    "sms_inbound_record",
    "sms_lookup",
    "sms_price_record",
    "sms_requeue",
    "sms_send",
    "sms_status_apply",
    "sms_unattributed_assign",
    "sms_unattributed_candidates",
    "transcription_attach",
    "voice_answer",
    "voice_dial_result",
]
