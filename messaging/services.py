"""What the Twilio half of messaging does: SMS, opt-outs, calls, voice routing, callbacks.

Views, tasks and webhook handlers all call these. Outbound calls to Twilio
happen only in tasks (never inside transaction.atomic()); webhook handlers
only write rows and enqueue follow-up tasks on commit.
"""

import datetime as dt
import logging
import math
import re
from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, Q, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from integrations.errors import (
    CircuitOpen,
    DomainError,
    PermanentError,
    ProviderError,
    ProviderRateLimited,
    RateLimited,
)
from integrations.registry import require
from integrations.states import transition
from integrations.task_base import enqueue_on_commit

from . import business_hours
from .models import CallLog, Conversation, OptOut, SendDoubt, SmsMessage
from .providers import twilio_rest, twiml

logger = logging.getLogger(__name__)

E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_BODY = 1600

# Twilio's default opt-out keywords (Advanced Opt-Out sends OptOutType too).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# GSM-7 basic set and the extension characters that cost two septets.
_GSM = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")


def segments_estimate(body):
    """How many SMS segments Twilio will bill (GSM-7: 160 / 153 per part; UCS-2: 70 / 67 code units)."""
    if all(c in _GSM or c in _GSM_EXT for c in body):
        length = sum(2 if c in _GSM_EXT else 1 for c in body)
        return 1 if length <= 160 else math.ceil(length / 153)
    length = len(body.encode("utf-16-le")) // 2
    return 1 if length <= 70 else math.ceil(length / 67)


def public_url(name, **query):
    """The URL Twilio calls us back on: APP_URL (what Twilio sees, not what a proxy forwards)."""
    url = settings.APP_URL + reverse(name)
    return f"{url}?{urlencode(query)}" if query else url


def price_estimate(operation, **units):
    """What the price table says `units` cost, until Twilio reports the billed price."""
    entry = settings.PROVIDER_PRICES.get("twilio", {}).get(operation, {})
    total = Decimal(str(entry.get("per_call", 0)))
    for unit, price in entry.get("per_unit", {}).items():
        total += Decimal(str(units.get(unit) or 0)) * Decimal(str(price))
    return total


def _sender():
    return settings.TWILIO_MESSAGING_SERVICE_SID or settings.TWILIO_PHONE_NUMBER


# --- Opt-outs ----------------------------------------------------------------


def opted_out(number):
    return OptOut.objects.filter(phone_number=number, active=True).exists()


def optout_apply(*, number, keyword, opt_out):
    now = timezone.now()
    fields = {"active": opt_out, "keyword": keyword}
    fields["opted_out_at" if opt_out else "opted_in_at"] = now
    OptOut.objects.update_or_create(phone_number=number, defaults=fields)


def _refuse_opted_out(number):
    if opted_out(number):
        raise DomainError(
            409,
            "recipient_opted_out",
            f"{number} replied STOP and cannot be messaged until it texts START.",
            to=number,
        )


# --- SMS ---------------------------------------------------------------------


def sms_create(*, owner, to, body):
    """Queue an SMS; the send task runs after commit."""
    require("twilio")
    _refuse_opted_out(to)
    from .tasks import sms_send

    with transaction.atomic():
        conversation, _ = Conversation.objects.get_or_create(owner=owner, remote_number=to)
        sms = SmsMessage.objects.create(
            owner=owner,
            conversation=conversation,
            direction=SmsMessage.Direction.OUTBOUND,
            to_number=to,
            from_number=_sender(),
            body=body,
            segments=segments_estimate(body),
        )
        Conversation.objects.filter(pk=conversation.pk).update(last_message_at=sms.created_at)
        transaction.on_commit(lambda: sms_send.delay(sms.pk))
    return sms


# How far Twilio's clock may run behind ours when a lookup matches a message by its date_created.
LOOKUP_CLOCK_SKEW = dt.timedelta(seconds=120)
# After a create call's own timeout, how long before a redelivered run treats it as over.
IN_FLIGHT_MARGIN_SECONDS = 5.0


class SendInFlight(Exception):
    """A redelivered run while the last create call may still be running; look it up after `wait` seconds."""

    def __init__(self, wait):
        super().__init__(f"the last create call may still be running; check again in {wait:.0f} s")
        self.wait = wait


def _nothing_sent(exc):
    """Twilio answered a clean refusal, or the call never left the hub: no message can exist."""
    return isinstance(exc, (RateLimited, ProviderRateLimited, CircuitOpen, PermanentError))


# --- Create attempts without an idempotency key (SMS and calls) ----------------
# Twilio's Messages and Calls APIs take no idempotency key. Each create call is
# recorded on the row (send_doubt=in_flight) with a conditional UPDATE against
# what the run read, so two runs never both create; only a clean answer clears
# it. A run that finds the doubt still set looks the row up on Twilio first.


def _attempt_claim(model, row, *, status):
    """Record that a create call starts now; None if another run changed the row since we read it."""
    now = timezone.now()
    claimed = model.objects.filter(
        pk=row.pk,
        status=status,
        external_id__isnull=True,
        send_doubt=row.send_doubt,
        send_attempted_at=row.send_attempted_at,
    ).update(
        send_doubt=SendDoubt.IN_FLIGHT,
        send_attempted_at=now,
        send_started_at=Coalesce("send_started_at", Value(now, output_field=DateTimeField())),
    )
    return now if claimed else None


def _attempt_settle(model, row, *, started, exc):
    """A create call that raised: cleared if nothing can exist on Twilio, else left ambiguous."""
    if _nothing_sent(exc):
        # Nothing to look up, and the lookup window starts at the next real attempt.
        settled = {"send_doubt": SendDoubt.NONE, "send_started_at": row.send_started_at}
    else:
        settled = {"send_doubt": SendDoubt.AMBIGUOUS}
    model.objects.filter(pk=row.pk, send_attempted_at=started).update(**settled)


def _in_flight_wait(row):
    """Seconds until a create call that started at send_attempted_at must have ended (0 if it has)."""
    if row.send_attempted_at is None:
        return 0.0
    conf = settings.PROVIDER_TIMEOUTS.get("twilio", settings.PROVIDER_TIMEOUTS["default"])
    longest = max(conf["web"], conf["task"])  # whichever the call that started ran with
    over = row.send_attempted_at + dt.timedelta(seconds=longest + IN_FLIGHT_MARGIN_SECONDS)
    return max(0.0, (over - timezone.now()).total_seconds())


def _lookup_since(row):
    """The earliest date_created a lost create call can have left on Twilio."""
    return (row.send_started_at or row.created_at) - LOOKUP_CLOCK_SKEW


def _lookup_until(row):
    """The latest date_created a lost create call can have left: its start, its timeout and the clock skew."""
    if row.send_attempted_at is None:
        return None
    conf = settings.PROVIDER_TIMEOUTS.get("twilio", settings.PROVIDER_TIMEOUTS["default"])
    longest = max(conf["web"], conf["task"])
    return row.send_attempted_at + dt.timedelta(seconds=longest + IN_FLIGHT_MARGIN_SECONDS) + LOOKUP_CLOCK_SKEW


def _lookup_pick(model, row, candidates):
    """The oldest candidate created before our last create call could have ended whose SID no other row holds.

    The upper bound keeps a later, unrelated message or call to the same
    number (the console, another system on the account) from being adopted.
    """
    until = _lookup_until(row)
    if until is not None:
        candidates = [c for c in candidates if c.date_created is None or c.date_created <= until]
    taken = set(
        model.objects.filter(external_id__in=[c.sid for c in candidates])
        .exclude(pk=row.pk)
        .values_list("external_id", flat=True)
    )
    candidates = [c for c in candidates if c.sid not in taken]
    return min(candidates, key=lambda c: c.date_created) if candidates else None


def sms_send(*, sms_id):
    """The send task's work: at most one message on Twilio per row.

    Twilio's Messages API takes no idempotency key, so every create call is
    recorded on the row before it starts (send_doubt=in_flight). Only a clean
    answer clears it: a SID, a 4xx, or a refusal before anything was sent. A
    run that finds the doubt still set (a timeout, a connection error, a 5xx,
    or a worker that died mid-call) looks the message up on Twilio and adopts
    it instead of creating it again.
    """
    sms = SmsMessage.objects.filter(pk=sms_id).first()
    if sms is None or sms.external_id or sms.status not in ("queued", "sending"):
        return "skipped"
    if sms.send_doubt:
        # Queued too: staff may re-queue a message that gave up while in doubt.
        if sms.send_doubt == SmsMessage.SendDoubt.IN_FLIGHT:
            wait = _in_flight_wait(sms)
            if wait > 0:
                raise SendInFlight(wait)
        found = sms_lookup(sms=sms)
        if found is not None:
            if sms.status == "queued":
                transition(SmsMessage, sms_id, "sending", frm="queued")
            return "found" if _sms_accepted(sms, found) else "skipped"
    if opted_out(sms.to_number):
        transition(
            SmsMessage,
            sms_id,
            "failed",
            frm=sms.status,
            error_code="opted_out",
            error_message="The recipient replied STOP.",
        )
        return "opted_out"
    if sms.status == "queued" and not transition(SmsMessage, sms_id, "sending", frm="queued"):
        return "skipped"
    # Claim this attempt against what we read, so two concurrent runs never both create.
    now = _attempt_claim(SmsMessage, sms, status="sending")
    if now is None:
        return "skipped"
    try:
        result, _ = twilio_rest.message_send(
            to=sms.to_number,
            body=sms.body,
            sender=sms.from_number,
            status_callback=public_url("twilio_webhooks:sms-status", sms=sms.pk),
            segments_estimate=sms.segments or segments_estimate(sms.body),
            owner=sms.owner_id,
            related=sms,
        )
    except Exception as exc:
        _attempt_settle(SmsMessage, sms, started=now, exc=exc)
        if isinstance(exc, (RateLimited, ProviderRateLimited)):
            transition(SmsMessage, sms_id, "queued", frm="sending")  # refused before sending: nothing went out
        elif isinstance(exc, ProviderError):
            if exc.code == twilio_rest.UNSUBSCRIBED_RECIPIENT:
                optout_apply(number=sms.to_number, keyword="21610", opt_out=True)
            if not exc.retryable:
                transition(
                    SmsMessage,
                    sms_id,
                    "failed",
                    frm="sending",
                    error_code=str(exc.code or ""),
                    error_message=exc.message,
                )
        raise
    _sms_accepted(sms, result)
    return "sent"


def _sms_accepted(sms, result):
    """Twilio has the message (created now, or found by a lookup): store its SID and move the row on."""
    segments = result.segments or sms.segments
    fields = {
        "external_id": result.sid,
        "segments": segments,
        "price_usd": price_estimate("sms.send", segments=segments),
        "send_doubt": SmsMessage.SendDoubt.NONE,
    }
    # A callback that raced the response may already have stamped the SID and moved the status on.
    stamped = (
        SmsMessage.objects.filter(pk=sms.pk)
        .filter(Q(external_id__isnull=True) | Q(external_id=result.sid))
        .update(**fields)
    )
    target = _SMS_STATUS.get(result.status, "sending")
    if target != "sending":
        transition(
            SmsMessage, sms.pk, target, frm="sending", error_code=result.error_code, error_message=result.error_message
        )
    return bool(stamped)


def sms_lookup(*, sms):
    """The message a lost create call left on Twilio, or None.

    Same To and sender, the exact body, outbound, created no earlier than our
    first create call started (less LOOKUP_CLOCK_SKEW), and not a SID another
    row already holds; the oldest such message if several. First with
    DateSent on or after that day, then, if nothing matched, without it: a
    message Twilio accepted but has not sent yet has no DateSent.
    """
    since = _lookup_since(sms)
    for sent_on_or_after in (since.astimezone(dt.UTC).date(), None):
        listed = twilio_rest.messages_list(
            to=sms.to_number,
            sender=sms.from_number,
            sent_on_or_after=sent_on_or_after,
            owner=sms.owner_id,
            related=sms,
        )
        candidates = [
            m
            for m in listed
            if m.body == sms.body
            and m.direction.startswith("outbound")
            and m.date_created is not None
            and m.date_created >= since
        ]
        found = _lookup_pick(SmsMessage, sms, candidates)
        if found is not None:
            return found
    return None


def sms_requeue(*, sms_id):
    """Staff: send again a failed outbound message Twilio never accepted (failed -> queued, a declared move)."""
    from .tasks import sms_send

    with transaction.atomic():
        moved = transition(
            SmsMessage,
            sms_id,
            "queued",
            frm="failed",
            where=Q(direction=SmsMessage.Direction.OUTBOUND, external_id__isnull=True),
            error_code="",
            error_message="",
        )
        if moved:
            enqueue_on_commit(sms_send, sms_id)
    return moved


def sms_give_up(*, sms_id, error):
    code = str(getattr(error, "code", "") or "")
    transition(
        SmsMessage,
        sms_id,
        "failed",
        where=Q(status__in=["queued", "sending"], external_id__isnull=True),
        error_code=code[:16],
        error_message=str(getattr(error, "message", error))[:2000],
    )


# Twilio MessageStatus -> our status. Twilio's own queue states are all "sending" to us.
_SMS_STATUS = {
    "accepted": "sending",
    "scheduled": "sending",
    "queued": "sending",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "partially_delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "canceled",
}


class StaleEvent(Exception):
    """A callback that would move a row backwards (it arrived late or twice)."""


class UnknownObject(Exception):
    """A callback about something the hub never sent."""


def sms_status_apply(*, payload):
    """A MessageStatus callback: forward-only; the final status queues the billed-price fetch."""
    sid = payload.get("MessageSid") or payload.get("SmsSid")
    twilio_status = payload.get("MessageStatus") or payload.get("SmsStatus") or ""
    target = _SMS_STATUS.get(twilio_status)
    if target is None:
        raise StaleEvent(f"unknown MessageStatus {twilio_status!r}")
    sms = SmsMessage.objects.select_for_update().filter(external_id=sid).first()
    ref = (payload.get("_query") or {}).get("sms")
    if sms is None and ref and str(ref).isdigit():
        # The callback beat our task's write of the SID: the URL carries our id.
        sms = SmsMessage.objects.select_for_update().filter(pk=int(ref), external_id__isnull=True).first()
        if sms is not None:
            SmsMessage.objects.filter(pk=sms.pk).update(external_id=sid)
    if sms is None:
        raise UnknownObject(f"no SMS with MessageSid {sid}")
    if target == sms.status:
        raise StaleEvent(f"already {sms.status}")
    now = timezone.now()
    fields = {"raw": payload}
    if target in ("undelivered", "failed"):
        fields["error_code"] = str(payload.get("ErrorCode") or "")[:16]
        fields["error_message"] = payload.get("ErrorMessage", "")
    if target == "sent":
        fields["sent_at"] = now
    if target == "delivered":
        fields["delivered_at"] = now
    if not transition(SmsMessage, sms.pk, target, frm=sms.status, **fields):
        raise StaleEvent(f"{sms.status} -> {target} is not a forward move")
    # Twilio prices a message once it has left ("sent"); ask then, or at the final status.
    if (target == "sent" or target in SmsMessage.FINAL) and not sms.cost_recorded:
        from .tasks import sms_price_fetch

        transaction.on_commit(lambda: sms_price_fetch.delay(sms.pk))
    return target


def sms_price_record(*, sms_id, final_try=False):
    """Fetch Twilio's billed price and book it, once, on the fetch's ProviderCall.

    Returns "pending" while Twilio has not priced it; on the final try the
    price table's estimate is booked instead, so no message goes uncosted.
    """
    sms = SmsMessage.objects.filter(pk=sms_id).first()
    if sms is None or not sms.external_id or sms.cost_recorded:
        return "skipped"

    def cost(result):
        amount = result.price_usd
        if amount is None and final_try:
            amount = sms.price_usd or price_estimate("sms.send", segments=result.segments or sms.segments)
        if amount is None:
            return 0
        # Claim the booking in the same step, so two fetches (sent, then delivered) never book twice.
        claimed = SmsMessage.objects.filter(pk=sms_id, cost_recorded=False).update(cost_recorded=True)
        return amount if claimed else 0

    result = twilio_rest.message_fetch(sid=sms.external_id, owner=sms.owner_id, related=sms, cost=cost)
    if result.price_usd is None:
        return "estimated" if final_try else "pending"
    SmsMessage.objects.filter(pk=sms_id).update(
        price_usd=result.price_usd, price_final=True, segments=result.segments or sms.segments
    )
    return "priced"


def sms_inbound_record(*, payload):
    """An inbound SMS: stored once, linked to the latest conversation with that number, keywords honoured."""
    sid = payload.get("MessageSid") or payload.get("SmsSid")
    sender = payload.get("From", "")
    body = payload.get("Body", "")
    if SmsMessage.objects.filter(external_id=sid).exists():
        return None
    conversation = Conversation.objects.filter(remote_number=sender).order_by("-last_message_at", "-id").first()
    sms = SmsMessage.objects.create(
        owner=conversation.owner if conversation else None,
        conversation=conversation,
        direction=SmsMessage.Direction.INBOUND,
        to_number=payload.get("To", ""),
        from_number=sender,
        body=body[:MAX_BODY],
        status=SmsMessage.Status.RECEIVED,
        external_id=sid,
        segments=int(payload.get("NumSegments") or 1),
        raw=payload,
    )
    if conversation:
        Conversation.objects.filter(pk=conversation.pk).update(last_message_at=sms.created_at)
    keyword = (payload.get("OptOutType") or body).strip().upper()
    if keyword in STOP_WORDS:
        optout_apply(number=sender, keyword=keyword, opt_out=True)
    elif keyword in START_WORDS:
        optout_apply(number=sender, keyword=keyword, opt_out=False)
    # HELP: Twilio answers it with the account's help text; it is stored like any message.
    return sms


# --- Calls -------------------------------------------------------------------


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
    from .tasks import call_place

    with transaction.atomic():
        call = CallLog.objects.create(
            owner=owner,
            direction=CallLog.Direction.OUTBOUND,
            from_number=settings.TWILIO_PHONE_NUMBER,
            to_number=to,
            say=say,
            record=record,
        )
        transaction.on_commit(lambda: call_place.delay(call.pk))
    return call


def call_place_run(*, call_id):
    """The place task's work: at most one call on Twilio per row (a second phone call is worse than a second SMS).

    Twilio's Calls API takes no idempotency key, so this follows sms_send: each
    create call is recorded on the row before it starts, only a clean answer
    clears it, and a run that finds the doubt still set looks the call up on
    Twilio and adopts it instead of dialing again.
    """
    call = CallLog.objects.filter(pk=call_id).first()
    if call is None or call.external_id or call.status not in ("queued", "dialing"):
        return "skipped"
    if call.send_doubt:
        # Queued too: a call deferred by a limiter after an ambiguous attempt is still in doubt.
        if call.send_doubt == SendDoubt.IN_FLIGHT:
            wait = _in_flight_wait(call)
            if wait > 0:
                raise SendInFlight(wait)
        found = call_lookup(call=call)
        if found is not None:
            if call.status == "queued":
                transition(CallLog, call_id, "dialing", frm="queued")
            return "found" if _call_accepted(call, found) else "skipped"
    if call.status == "queued" and not transition(CallLog, call_id, "dialing", frm="queued"):
        return "skipped"
    now = _attempt_claim(CallLog, call, status="dialing")
    if now is None:
        return "skipped"
    try:
        result = twilio_rest.call_place(
            to=call.to_number,
            sender=call.from_number,
            twiml=twiml.say(call.say),
            status_callback=public_url("twilio_webhooks:call-status", call=call.pk),
            recording_callback=public_url("twilio_webhooks:recording"),
            record=call.record,
            owner=call.owner_id,
            related=call,
        )
    except Exception as exc:
        _attempt_settle(CallLog, call, started=now, exc=exc)
        if isinstance(exc, (RateLimited, ProviderRateLimited)):
            transition(CallLog, call_id, "queued", frm="dialing")  # refused before dialing: no call exists
        elif isinstance(exc, ProviderError) and not exc.retryable:
            transition(
                CallLog, call_id, "failed", frm="dialing", error_code=str(exc.code or ""), error_message=exc.message
            )
        raise
    _call_accepted(call, result)
    return "placed"


def _call_accepted(call, result):
    """Twilio has the call (placed now, or found by a lookup): store its SID and move the row on."""
    fields = {"external_id": result.sid, "twilio_status": result.status, "send_doubt": SendDoubt.NONE}
    if result.duration_seconds is not None:
        fields["duration_seconds"] = result.duration_seconds
    # A status callback that raced the response may already have stamped the SID and moved the status on.
    stamped = (
        CallLog.objects.filter(pk=call.pk)
        .filter(Q(external_id__isnull=True) | Q(external_id=result.sid))
        .update(**fields)
    )
    # A found call may be long over; its price is then booked by costs_unbooked_sweep.
    target = CALL_STATUS.get(result.status, "dialing")
    if stamped and target != "dialing":
        transition(CallLog, call.pk, target, frm="dialing")
    return bool(stamped)


def call_lookup(*, call):
    """The call a lost create call left on Twilio, or None.

    Same To and From, outbound-api, created no earlier than our first create
    call started (less LOOKUP_CLOCK_SKEW), and not a SID another row already
    holds; the oldest such call if several. First with StartTime on or after
    that day, then, if nothing matched, without it: a call Twilio has queued
    but not dialed yet has no StartTime. A call carries no body to compare, so
    another call to the same number from the same number in that window, made
    outside the hub or by a row that has not stored its SID, can match too.
    """
    since = _lookup_since(call)
    for started_on_or_after in (since.astimezone(dt.UTC).date(), None):
        listed = twilio_rest.calls_list(
            to=call.to_number,
            sender=call.from_number,
            started_on_or_after=started_on_or_after,
            owner=call.owner_id,
            related=call,
        )
        candidates = [
            c
            for c in listed
            if c.direction == "outbound-api" and c.date_created is not None and c.date_created >= since
        ]
        found = _lookup_pick(CallLog, call, candidates)
        if found is not None:
            return found
    return None


def call_give_up(*, call_id, error):
    transition(
        CallLog,
        call_id,
        "failed",
        where=Q(status__in=["queued", "dialing"], external_id__isnull=True),
        error_code=str(getattr(error, "code", "") or "")[:16],
        error_message=str(getattr(error, "message", error))[:2000],
    )


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


def call_status_apply(*, payload):
    sid = payload.get("CallSid")
    twilio_status = payload.get("CallStatus", "")
    target = CALL_STATUS.get(twilio_status)
    if target is None:
        raise StaleEvent(f"unknown CallStatus {twilio_status!r}")
    call = CallLog.objects.select_for_update().filter(external_id=sid).first()
    ref = (payload.get("_query") or {}).get("call")
    if call is None and ref and str(ref).isdigit():
        call = CallLog.objects.select_for_update().filter(pk=int(ref), external_id__isnull=True).first()
        if call is not None:
            CallLog.objects.filter(pk=call.pk).update(external_id=sid, send_doubt=SendDoubt.NONE)
    if call is None:
        raise UnknownObject(f"no call with CallSid {sid}")
    fields = {"twilio_status": twilio_status, "raw": payload}
    if payload.get("CallDuration") not in (None, ""):
        fields["duration_seconds"] = int(payload["CallDuration"])
    if target in ("failed",) and payload.get("ErrorCode"):
        fields["error_code"] = str(payload["ErrorCode"])[:16]
    if target == call.status:
        # queued -> initiated are both "dialing" to us: keep Twilio's word for it.
        CallLog.objects.filter(pk=call.pk).update(**fields)
        return target
    if not transition(CallLog, call.pk, target, frm=call.status, **fields):
        raise StaleEvent(f"{call.status} -> {target} is not a forward move")
    if target in CallLog.FINAL and not call.cost_recorded:
        from .tasks import call_price_fetch

        transaction.on_commit(lambda: call_price_fetch.delay(call.pk))
    return target


def call_price_record(*, call_id, final_try=False):
    """Book a finished call's minutes and billed price (or, on the final try, the table's estimate)."""
    call = CallLog.objects.filter(pk=call_id).first()
    if call is None or not call.external_id or call.cost_recorded:
        return "skipped"

    def cost(result):
        minutes = math.ceil((result.duration_seconds or call.duration_seconds or 0) / 60)
        amount = result.price_usd
        if amount is None and final_try:
            amount = price_estimate("call.price", minutes=minutes)
        if amount is None:
            return {}, Decimal(0)
        claimed = CallLog.objects.filter(pk=call_id, cost_recorded=False).update(cost_recorded=True)
        return ({"minutes": minutes}, amount) if claimed else ({}, Decimal(0))

    result = twilio_rest.call_fetch(sid=call.external_id, owner=call.owner_id, related=call, cost=cost)
    if result.price_usd is None:
        return "estimated" if final_try else "pending"
    CallLog.objects.filter(pk=call_id).update(
        price_usd=result.price_usd, price_final=True, duration_seconds=result.duration_seconds
    )
    return "priced"


# --- Inbound voice (answered synchronously with TwiML) -------------------------


def _voicemail(call, schedule, routing):
    CallLog.objects.filter(pk=call.pk).update(routing=routing, voicemail=True)
    return twiml.voicemail(
        greeting=schedule.greeting,
        recording_url=public_url("twilio_webhooks:recording"),
        transcription_url=public_url("twilio_webhooks:transcription"),
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
    """After <Dial>: hang up if someone answered, else the rule's fallback number once, then voicemail."""
    query = payload.get("_query") or {}
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
    from .models import ForwardingRule

    rule = ForwardingRule.objects.filter(pk=query.get("rule") if str(query.get("rule", "")).isdigit() else None).first()
    if query.get("stage") == "primary" and rule is not None and rule.fallback_number:
        CallLog.objects.filter(pk=call.pk).update(routing="fallback", forwarded_to=rule.fallback_number)
        return twiml.forward(
            number=rule.fallback_number,
            ring_timeout=rule.ring_timeout,
            action_url=public_url("twilio_webhooks:voice-dial", rule=rule.pk, stage="fallback"),
        )
    return _voicemail(call, schedule, "no_answer")


def recording_attach(*, payload):
    call = CallLog.objects.select_for_update().filter(external_id=payload.get("CallSid", "")).first()
    if call is None:
        raise UnknownObject(f"no call with CallSid {payload.get('CallSid')}")
    if payload.get("RecordingStatus", "completed") != "completed":
        raise StaleEvent(f"recording {payload.get('RecordingStatus')}")
    duration = payload.get("RecordingDuration")
    CallLog.objects.filter(pk=call.pk).update(
        recording_sid=payload.get("RecordingSid", ""),
        recording_url=payload.get("RecordingUrl", ""),
        recording_duration=int(duration) if str(duration or "").isdigit() else None,
    )


def transcription_attach(*, payload):
    call = CallLog.objects.select_for_update().filter(external_id=payload.get("CallSid", "")).first()
    if call is None:
        raise UnknownObject(f"no call with CallSid {payload.get('CallSid')}")
    fields = {
        "transcription_sid": payload.get("TranscriptionSid", ""),
        "transcription_status": payload.get("TranscriptionStatus", ""),
        "transcript": payload.get("TranscriptionText", "") or "",
    }
    # The transcription callback also names the recording; keep it if that callback was lost.
    if not call.recording_url and payload.get("RecordingUrl"):
        fields.update(recording_sid=payload.get("RecordingSid", ""), recording_url=payload["RecordingUrl"])
    CallLog.objects.filter(pk=call.pk).update(**fields)


def costs_unbooked_sweep(*, older_than_seconds=3600, limit=500):
    """Messages and calls Twilio accepted whose cost was never booked (no status callback came):
    fetch their price now. Booking is claimed once per row, so a repeat sweep cannot double it."""
    from .tasks import call_price_fetch, sms_price_fetch

    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    sms_ids = list(
        SmsMessage.objects.filter(
            direction=SmsMessage.Direction.OUTBOUND, cost_recorded=False, updated_at__lt=cutoff, external_id__gt=""
        )
        .exclude(status__in=[SmsMessage.Status.QUEUED, SmsMessage.Status.FAILED])
        .values_list("pk", flat=True)[:limit]
    )
    call_ids = list(
        CallLog.objects.filter(
            cost_recorded=False, updated_at__lt=cutoff, status__in=CallLog.FINAL, external_id__gt=""
        ).values_list("pk", flat=True)[:limit]
    )
    for pk in sms_ids:
        transaction.on_commit(lambda pk=pk: sms_price_fetch.delay(pk))
    for pk in call_ids:
        transaction.on_commit(lambda pk=pk: call_price_fetch.delay(pk))
    return {"sms": len(sms_ids), "calls": len(call_ids)}
