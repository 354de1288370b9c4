"""A meeting create under an Idempotency-Key, made once however often the client retries.

Zoom's and Webex's APIs take no idempotency key or client-chosen id, and a retry follows a failure that left the API no
answer to replay (a timeout, a reset, a 5xx: integrations.api.idempotency). So every attempt's meeting carries
the create id (calendars.create_id) where the provider keeps a caller's own value (Zoom: a custom key; Webex: an
integration tag), and a MeetingCreate row says, before each POST, that one is going out: the contract of mail's
MailSend. A clean refusal clears it; anything else leaves it in doubt, and only then does the next attempt look
the meeting up by that id, adopting what it finds, before it creates.

Google Meet and Teams need no lookup (the provider answers a repeated create with what the first one made), but
their creates are recorded too: once a create has finished, its retry after the API's record of the key is gone
(24 h, or a failure after the meeting's row was saved) is answered from the row (`made_before`), instead of Graph
or Google answering with the event the row already holds (a second row for it: a unique-constraint 500) or, when
the meeting was cancelled through the hub, with a new one.
"""

from integrations.errors import DomainError, proves_nothing_sent

from ..calendars.create_id import create_id
from ..models import Meeting, MeetingCreate


def create_record(provider, *, owner, conn, idempotency_key, request):
    """The MeetingCreate of this create, made by its first attempt; None without a key.

    Its create id covers owner, provider and connection, key and the whole `request`: the same key with another
    request (a failed first attempt leaves the API no record to refuse it with) is another create, never answered
    with this one's meeting.
    """
    if not idempotency_key:
        return None
    scope = f"{provider}:{conn.pk}" if conn is not None else provider
    made_id = create_id(conn, scope, idempotency_key, request, owner=owner)
    record, _ = MeetingCreate.objects.get_or_create(provider=provider, create_id=made_id, defaults={"owner": owner})
    return record


def create_once(record, *, create, find):
    """The provider's meeting for this create: the one an earlier attempt made, if one may have, else a new one.

    `create(create_id)` posts it; `find(create_id)` looks for the meeting carrying the id (None: none does). The
    record is marked in flight before the POST; a clean refusal clears it, any other failure leaves it
    ambiguous (the provider may have made the meeting), and a process that dies mid-call leaves it in flight.
    Only a record in doubt is looked up, so a create pays for the lookup only after such a failure. Without a
    record, `create("")`: no id is sent, as before.
    """
    if record is None:
        return create("")
    if record.doubt and (found := find(record.create_id)) is not None:
        return found
    MeetingCreate.objects.filter(pk=record.pk).update(doubt=MeetingCreate.Doubt.IN_FLIGHT)
    try:
        return create(record.create_id)
    except Exception as exc:
        doubt = MeetingCreate.Doubt.NONE if proves_nothing_sent(exc) else MeetingCreate.Doubt.AMBIGUOUS
        MeetingCreate.objects.filter(pk=record.pk).update(doubt=doubt)
        raise


def create_finished(record, meeting):
    """In the transaction that saves the meeting's row: the create is done, and a retry is answered with it."""
    if record is not None:
        MeetingCreate.objects.filter(pk=record.pk).update(meeting=meeting, doubt=MeetingCreate.Doubt.NONE)


def made_before(record):
    """A create that finished, asked again once the API's record of its key is gone: the meeting it made."""
    if record.meeting.status == Meeting.Status.CANCELLED:
        raise DomainError(
            409,
            "meeting_deleted",
            "An earlier attempt of this create (same Idempotency-Key) made the meeting, and it has been cancelled "
            "since; to make it again, send the create with a new Idempotency-Key.",
        )
    return record.meeting
