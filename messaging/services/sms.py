"""SMS: queue, send once, look up a lost send, status callbacks, billed price, inbound messages."""

import math
import re

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from integrations.errors import DomainError
from integrations.registry import require
from integrations.states import transition
from integrations.task_base import enqueue_on_commit

from ..models import Conversation, SmsMessage
from ..providers import twilio_rest
from .common import MAX_BODY, StaleEvent, public_url, refuse_own_number, row_for_callback
from .costs import price_estimate, price_record
from .create_once import CreateOnce
from .optouts import opted_out, optout_apply, optout_keyword_apply, refuse_opted_out

MAX_SEGMENTS = 32767  # SmsMessage.segments is a PositiveSmallIntegerField
MAX_MEDIA = 32767  # SmsMessage.num_media is a PositiveSmallIntegerField
_MEDIA_URL = re.compile(r"MediaUrl[0-9]+")

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


def _sender():
    """The sender fields of a new message: the messaging service, which picks the number once Twilio has the
    message (the number is stored when Twilio reports it), else our number."""
    if settings.TWILIO_MESSAGING_SERVICE_SID:
        return {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID, "from_number": ""}
    return {"from_number": settings.TWILIO_PHONE_NUMBER}


def _number_reported(sender):
    """The number (or sender ID) Twilio says a message went from, or None: empty or a messaging service's id."""
    return sender[:40] if sender and not sender.startswith("MG") else None


def sms_create(*, owner, to, body):
    """Queue an SMS; the send task runs after commit."""
    require("twilio")
    refuse_opted_out(to)
    refuse_own_number(to)
    from ..tasks import sms_send

    with transaction.atomic():
        conversation, _ = Conversation.objects.get_or_create(owner=owner, remote_number=to)
        sms = SmsMessage.objects.create(
            owner=owner,
            conversation=conversation,
            direction=SmsMessage.Direction.OUTBOUND,
            to_number=to,
            **_sender(),
            body=body,
            segments=segments_estimate(body),
        )
        Conversation.objects.filter(pk=conversation.pk).update(last_message_at=sms.created_at)
        enqueue_on_commit(sms_send, sms.pk)
    return sms


def _earliest(field, when):
    """Set a time field to `when` unless the row holds an earlier time already (which is never moved)."""
    return Least(Coalesce(F(field), Value(when)), Value(when))


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


class _SmsCreate(CreateOnce):
    def create(self, sms, **addressed):
        return twilio_rest.message_send(
            body=sms.body,
            status_callback=public_url("twilio_webhooks:sms-status", sms=sms.pk),
            segments_estimate=sms.segments or segments_estimate(sms.body),
            **addressed,
        )

    def list_page(self, **filters):
        return twilio_rest.messages_list(**filters)

    def matches(self, sms, message):
        # Same To and sender (listed so), the exact body, outbound.
        return message.body == sms.body and message.direction.startswith("outbound")

    def stamped_fields(self, sms, result):
        segments = result.segments or sms.segments
        fields = {"segments": segments, "price_usd": price_estimate("sms.send", segments=segments)}
        if number := _number_reported(result.from_number):
            fields["from_number"] = number
        return fields | _times_reported(result)

    def before_create(self, sms):
        if not opted_out(sms.to_number):
            return None
        transition(
            SmsMessage,
            sms.pk,
            "failed",
            frm=sms.status,
            error_code="opted_out",
            error_message="The recipient replied STOP.",
        )
        return "opted_out"

    def refused(self, sms, exc):
        if exc.code == twilio_rest.UNSUBSCRIBED_RECIPIENT:
            optout_apply(number=sms.to_number, keyword="21610", opt_out=True)


def _times_reported(result):
    """sent_at and delivered_at of a message Twilio reports past sending (a create answer, a lookup).

    sent_at is Twilio's date_sent, for every status that means the message left Twilio (sent, delivered, read,
    undelivered). delivered_at (delivered, read) is the resource's date_updated: the Message resource has no
    delivery time, and its last change is the delivery receipt (or a later read receipt, never earlier). Either is
    the hub's time only when Twilio gives none, as for a status callback; an earlier time the row holds is kept.
    """
    target = _SMS_STATUS.get(result.status)
    now = timezone.now()
    times = {}
    if target in ("sent", "delivered", "undelivered"):
        times["sent_at"] = _earliest("sent_at", result.date_sent or result.date_updated or now)
    if target == "delivered":
        times["delivered_at"] = _earliest("delivered_at", result.date_updated or now)
    return times


SMS = _SmsCreate(SmsMessage, working="sending", done="sent", statuses=_SMS_STATUS)


def sms_send(*, sms_id):
    """The send task's work: at most one message on Twilio per row (see create_once)."""
    return SMS.run(sms_id)


# The message a lost create call left on Twilio (same To, sender and body, outbound), or None.
sms_lookup = SMS.lookup


def sms_requeue(*, sms_id):
    """Staff: send again a failed outbound message Twilio never accepted (failed -> queued, a declared move)."""
    from ..tasks import sms_send

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
    SMS.give_up(sms_id, error)


def sms_status_apply(*, payload):
    """A MessageStatus callback: forward-only; the final status queues the billed-price fetch."""
    sid = payload.get("MessageSid") or payload.get("SmsSid")
    twilio_status = payload.get("MessageStatus") or payload.get("SmsStatus") or ""
    target = _SMS_STATUS.get(twilio_status)
    if target is None:
        raise StaleEvent(f"unknown MessageStatus {twilio_status!r}")
    ref = (payload.get("_query") or {}).get("sms")
    sms = row_for_callback(SmsMessage, sid=sid, ref=ref, what="SMS with MessageSid")
    if target == sms.status:
        raise StaleEvent(f"already {sms.status}")
    now = timezone.now()
    fields = {"raw": payload}
    if sms.direction == SmsMessage.Direction.OUTBOUND and (number := _number_reported(payload.get("From"))):
        fields["from_number"] = number  # the number a messaging service chose
    if sms.status == "failed":
        # Only a row that failed without Twilio's SID (the send task gave up in doubt, read here before the
        # callback stamped it) is Twilio's to move on; a message Twilio itself failed stays failed.
        if sms.external_id is not None:
            raise StaleEvent(f"{sms.status} -> {target} is not a forward move")
        fields.update(error_code="", error_message="")
    if target in ("undelivered", "failed"):
        fields["error_code"] = str(payload.get("ErrorCode") or "")[:16]
        fields["error_message"] = payload.get("ErrorMessage", "")
    if target in ("sent", "delivered", "undelivered"):
        # Twilio may skip "sent" or send it after a later status: a delivered message (or one the carrier reports
        # undelivered) left Twilio all the same, at that event's time if it is all the hub knows; an earlier sent
        # time is kept.
        fields["sent_at"] = _earliest("sent_at", now)
    if target == "delivered":
        fields["delivered_at"] = now
        # A carrier's late receipt after "undelivered": the message reached the handset, its error no longer holds.
        fields.update(error_code="", error_message="")
    if not transition(SmsMessage, sms.pk, target, frm=sms.status, **fields):
        raise StaleEvent(f"{sms.status} -> {target} is not a forward move")
    # Twilio prices a message once it has left ("sent"); ask then, or at the final status.
    if (target == "sent" or target in SmsMessage.FINAL) and not sms.cost_recorded:
        from ..tasks import sms_price_fetch

        enqueue_on_commit(sms_price_fetch, sms.pk)
    elif fields.get("error_code") and not fields.get("error_message"):
        from ..tasks import sms_error_describe

        # Its cost was booked at "sent", so no price fetch comes after the failure to read its description.
        enqueue_on_commit(sms_error_describe, sms.pk)
    return target


def sms_price_record(*, sms_id, final_try=False):
    """Fetch Twilio's billed price and book it, once, on the fetch's ProviderCall (see costs.price_record)."""
    outcome = price_record(
        SmsMessage,
        sms_id,
        fetch=lambda sms, cost: _fetched(
            sms, twilio_rest.message_fetch(sid=sms.external_id, owner=sms.owner_id, related=sms, cost=cost)
        ),
        # The segments were booked on the send's own ProviderCall.
        units=lambda sms, result: {},
        estimate=lambda sms, result, units: (
            sms.price_usd or price_estimate("sms.send", segments=result.segments or sms.segments)
        ),
        final_try=final_try,
        stored=lambda sms, result: {
            "segments": result.segments or sms.segments,
            **({"from_number": number} if (number := _number_reported(result.from_number)) else {}),
        },
    )
    if outcome == "skipped":
        # Booked already: by the fetch "sent" queued, which may have read the message before it failed (the
        # failure's callback, seeing no cost booked yet, queued this fetch rather than sms_error_describe).
        sms_error_describe(sms_id=sms_id)
    return outcome


def _fetched(sms, result):
    """What a fetch of the Message resource tells beyond its price: Twilio's time of sending and the description
    of its error. Returns the fetch's result."""
    if result.date_sent:
        # The status callback's time is when the hub processed it (the webhook drain may be behind, Twilio may
        # send "sent" late or never); Twilio's date_sent is when it sent. Only ever moved earlier.
        SmsMessage.objects.filter(pk=sms.pk, sent_at__gt=result.date_sent).update(sent_at=result.date_sent)
    return _error_described(sms, result)


def _error_described(sms, result):
    """Twilio's status callback names the error by its ErrorCode alone; the Message resource this fetch read
    also has its description (error_message, when Twilio gives one: it may be null). It is kept on the row only
    while the row holds that same code and no description yet, so a later status's own error is never mixed
    with this one. Returns the fetch's result."""
    if result.error_code and result.error_message:
        SmsMessage.objects.filter(pk=sms.pk, error_code=result.error_code, error_message="").update(
            error_message=result.error_message[:2000]
        )
    return result


def sms_error_describe(*, sms_id):
    """Read Twilio's description of a failed message's error when no price fetch will: its cost was booked at
    "sent". One fetch of the Message resource, which books nothing (the price is booked once, by then). Nothing is
    fetched for a row that has its description, or no Twilio error to describe."""
    sms = (
        SmsMessage.objects.filter(pk=sms_id, status__in=["failed", "undelivered"], error_message="")
        .exclude(error_code="")
        .exclude(external_id__isnull=True)
        .exclude(external_id="")
        .first()
    )
    if sms is None:
        return "skipped"
    _fetched(
        sms, twilio_rest.message_fetch(sid=sms.external_id, owner=sms.owner_id, related=sms, operation="sms.fetch")
    )
    return "fetched"


def sms_inbound_record(*, payload):
    """An inbound SMS: stored once, given to the one user who talks with that number, keywords honoured.

    Users share the hub's number, so the sender's number is all that tells whose reply it is. When
    several users have a conversation with it, the latest to text it is only a guess, and a wrong one
    shows one user a message meant for another: the message is stored unattributed, for staff.
    """
    sid = payload.get("MessageSid") or payload.get("SmsSid")
    sender = payload.get("From", "")
    body = payload.get("Body", "")
    if SmsMessage.objects.filter(external_id=sid).exists():
        return None
    conversations = list(Conversation.objects.filter(remote_number=sender).order_by("id")[:2])
    conversation = conversations[0] if len(conversations) == 1 else None
    status, error_message = SmsMessage.Status.RECEIVED, ""
    if len(conversations) > 1:
        owners = Conversation.objects.filter(remote_number=sender).count()
        status = SmsMessage.Status.UNATTRIBUTED
        error_message = f"{owners} users have a conversation with {sender}; staff must tell whose reply this is."
    sms = SmsMessage.objects.create(
        owner_id=conversation.owner_id if conversation else None,
        conversation=conversation,
        direction=SmsMessage.Direction.INBOUND,
        to_number=payload.get("To", ""),
        from_number=sender,
        body=body[:MAX_BODY],
        status=status,
        error_message=error_message,
        external_id=sid,
        segments=_segments_reported(payload.get("NumSegments")),
        num_media=_media_reported(payload),
        raw=payload,
    )
    if conversation:
        Conversation.objects.filter(pk=conversation.pk).update(last_message_at=sms.created_at)
    # HELP: Twilio answers it with the account's help text; it is stored like any message.
    optout_keyword_apply(number=sender, text=payload.get("OptOutType") or body)
    return sms


def _segments_reported(value):
    """Twilio's NumSegments of an inbound SMS (1 when it names none), or None when no SMS can have it (0,
    negative, not a whole number, or past the column's range): the message is stored all the same."""
    if value in (None, ""):
        return 1
    try:
        segments = int(value)
    except (TypeError, ValueError):
        return None
    return segments if 1 <= segments <= MAX_SEGMENTS else None


def _media_reported(payload):
    """How many media files an inbound message came with: Twilio's NumMedia (0 when it names none), else, when that
    is no count, the MediaUrl0.. it names."""
    try:
        count = int(payload.get("NumMedia") or 0)
    except (TypeError, ValueError):
        count = -1
    if 0 <= count <= MAX_MEDIA:
        return count
    return sum(1 for name, value in payload.items() if value and _MEDIA_URL.fullmatch(name))


def sms_unattributed_candidates(*, sms):
    """The conversations (with their owners) an unattributed inbound SMS could be given to: every user who talks
    with its sender's number."""
    return Conversation.objects.filter(remote_number=sms.from_number).select_related("owner").order_by("owner_id")


def sms_unattributed_assign(*, sms_id, owner):
    """Staff: give an unattributed inbound SMS to `owner`, one of the users who talk with its sender.

    The message then reads as if it had been attributed on arrival: owned, in that user's conversation (whose
    latest activity it may now be), received. Keywords need nothing more: STOP and START were applied to the
    sender's number on arrival, and opt-outs are per number, not per user. The row is locked while it is
    decided, so of two staff members giving the same message away at once, the second is told it is gone.
    """
    with transaction.atomic():
        sms = SmsMessage.objects.select_for_update().filter(pk=sms_id).first()
        if sms is None:
            raise DomainError(404, "sms_not_found", f"SMS {sms_id} no longer exists.")
        if sms.direction != SmsMessage.Direction.INBOUND or sms.status != SmsMessage.Status.UNATTRIBUTED:
            given = f" (to {sms.owner})" if sms.owner_id else ""
            raise DomainError(
                409,
                "sms_not_unattributed",
                f"This message is {sms.status}{given}, not unattributed: someone may have assigned it already. "
                "Nothing was changed.",
                status=sms.status,
            )
        conversation = Conversation.objects.filter(owner=owner, remote_number=sms.from_number).first()
        if conversation is None:
            raise DomainError(
                409,
                "sms_owner_not_a_candidate",
                f"{owner} has no conversation with {sms.from_number}; choose one of the users who do. "
                "Nothing was changed.",
            )
        moved = transition(
            SmsMessage,
            sms.pk,
            SmsMessage.Status.RECEIVED,
            frm=SmsMessage.Status.UNATTRIBUTED,
            where=Q(direction=SmsMessage.Direction.INBOUND, owner__isnull=True),
            strict=True,
            owner=owner,
            conversation=conversation,
            # The reason named how many users talk with the sender: not for the new owner's eyes (the API shows it).
            error_message="",
        )
        if not moved:  # an unattributed row that somehow has an owner or is outbound: not ours to decide
            raise DomainError(409, "sms_not_unattributed", "This message cannot be assigned. Nothing was changed.")
        # As on arrival, but an older message does not pull the conversation's latest activity back.
        Conversation.objects.filter(pk=conversation.pk).filter(
            Q(last_message_at__isnull=True) | Q(last_message_at__lt=sms.created_at)
        ).update(last_message_at=sms.created_at)
    sms.refresh_from_db()
    return sms
