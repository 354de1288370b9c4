"""What meeting lifecycle webhooks do to the hub's records: meeting state and attendance.

Handlers of every provider (Zoom, Webex) call these with normalised values. Ordering: deliveries come
late, twice, or out of order, and nothing here goes backwards. A meeting moves through its state
machine with the event's own time (`transition(..., occurred_at=...)`), so an `ended` stays ended when
its `started` arrives after it, and `cancelled` is final. Attendance is one row per stretch keyed by
the join time both joined and left events carry, so a left before its joined, or a duplicate, lands on
the same row, and times only ever widen.
"""

from django.db import IntegrityError, transaction

from integrations.states import transition

from .models import Meeting, MeetingAttendance, MeetingParticipant


def meeting_for_event(provider, external_id):
    return Meeting.objects.filter(provider=provider, external_id=str(external_id)).first()


def meeting_moved(*, meeting, status, occurred_at, when=None):
    """Apply a started / ended / cancelled event; False when it is stale, repeated or not allowed."""
    fields = {"started_at": when} if status == Meeting.Status.STARTED else {"ended_at": when}
    fields = {k: v for k, v in fields.items() if v is not None}
    if status == Meeting.Status.STARTED and occurred_at is None:
        # Without the event's time a `started` cannot be told from a late one: it may begin a meeting, never
        # reopen an ended one (a restart always carries its time).
        return transition(Meeting, meeting.pk, status, frm=Meeting.Status.SCHEDULED, **fields)
    return transition(Meeting, meeting.pk, status, occurred_at=occurred_at, **fields)


def _invitee(meeting, email, name, joined_at, left_at):
    """The invitee row of this email (made for a guest who was not invited), its window widened."""
    participant, _ = MeetingParticipant.objects.get_or_create(meeting=meeting, email=email, defaults={"name": name})
    changed = []
    if joined_at and (participant.joined_at is None or joined_at < participant.joined_at):
        participant.joined_at = joined_at
        changed.append("joined_at")
    if left_at and (participant.left_at is None or left_at > participant.left_at):
        participant.left_at = left_at
        changed.append("left_at")
    if changed:
        participant.save(update_fields=changed)
    return participant


def _stretch(rows, *, joined_at, left_at):
    """The row this event belongs to, or None for a new one."""
    if joined_at is not None:
        row = rows.filter(joined_at=joined_at).first()
        # A left that came first without its join time waits in a row without one; this joined fills it.
        return row or rows.filter(joined_at__isnull=True, left_at__gte=joined_at).order_by("left_at").first()
    # A left without its join time closes the latest stretch still open that began before it.
    return rows.filter(left_at__isnull=True, joined_at__lte=left_at).order_by("-joined_at").first()


def attendance_record(*, meeting, key, email="", name="", joined_at=None, left_at=None):
    """Book one participant joined / left event. Returns the attendance row (None if nobody is named)."""
    email = (email or "").strip().lower()
    key = str(key or email or "").strip()[:255]
    if not key or (joined_at is None and left_at is None):
        return None  # nobody to attribute it to, or no time: the raw event stays in the inbox
    participant = _invitee(meeting, email, name, joined_at, left_at) if email else None
    rows = MeetingAttendance.objects.filter(meeting=meeting, participant_key=key)
    for _ in range(2):  # a concurrent delivery of the same join may insert first: then update its row
        row = _stretch(rows, joined_at=joined_at, left_at=left_at)
        if row is not None:
            break
        try:
            with transaction.atomic():
                return MeetingAttendance.objects.create(
                    meeting=meeting,
                    participant=participant,
                    participant_key=key,
                    email=email,
                    name=name[:200],
                    joined_at=joined_at,
                    left_at=left_at,
                )
        except IntegrityError:
            continue
    updates = {}
    if joined_at and row.joined_at is None:
        updates["joined_at"] = joined_at
    if left_at and (row.left_at is None or left_at > row.left_at):
        updates["left_at"] = left_at
    if participant is not None and row.participant_id is None:
        updates["participant"] = participant
    if name and not row.name:
        updates["name"] = name[:200]
    if updates:
        MeetingAttendance.objects.filter(pk=row.pk).update(**updates)
        row.refresh_from_db()
    return row
