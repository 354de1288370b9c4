"""Meetings follow their calendar events: a moved event reschedules the meeting, a cancelled one cancels it.

A Google Meet or Teams meeting *is* its calendar event (the event carries the
link), so the provider already moved or cancelled it and told the attendees:
only the hub's row follows. A Zoom or Webex meeting attached to an event is a
separate object: it is rescheduled or cancelled at its provider (which tells its
participants) through the same services as the API. Comparing with what the row
already says makes a duplicate or the echo of the hub's own change a no-op.
"""

import logging

from django.db.models import Q
from django.dispatch import receiver

from integrations.errors import DomainError, ProviderError
from integrations.states import transition

from . import services
from .models import Meeting
from .signals import calendar_event_changed

logger = logging.getLogger(__name__)
EVENT_IS_MEETING = ("google_meet", "teams")


def meetings_for_event(*, connection_id, event_id):
    return Meeting.objects.filter(
        Q(calendar_connection_id=connection_id, calendar_event_id=event_id)
        | Q(provider__in=EVENT_IS_MEETING, connection_id=connection_id, external_id=event_id)
    ).exclude(status=Meeting.Status.CANCELLED)


def meeting_follow_calendar(*, connection_id, event_id, start=None, end=None, cancelled=False):
    """Apply a calendar event's move or cancellation to the meetings it carries; returns the meetings changed."""
    changed = []
    for meeting in meetings_for_event(connection_id=connection_id, event_id=event_id):
        is_event = meeting.provider in EVENT_IS_MEETING and meeting.external_id == event_id
        try:
            if cancelled:
                if is_event:
                    transition(Meeting, meeting.pk, Meeting.Status.CANCELLED)
                    services.meeting_stop_listening(meeting)
                else:
                    services.meeting_cancel(meeting=meeting, notify=True, follow_calendar=False)
                changed.append(meeting.pk)
                continue
            if start is None:
                continue
            duration = round((end - start).total_seconds() / 60) if end else meeting.duration_minutes
            if start == meeting.start_time and duration == meeting.duration_minutes:
                continue  # already there: a duplicate, or the echo of our own change
            if is_event:
                Meeting.objects.filter(pk=meeting.pk).update(start_time=start, duration_minutes=max(1, duration))
            else:
                services.meeting_update(
                    meeting=meeting, start_time=start, duration_minutes=max(1, duration), follow_calendar=False
                )
            changed.append(meeting.pk)
        except (DomainError, ProviderError):
            # A move into the past, a revoked connection, a provider outage: the calendar is right, the
            # meeting is left as it was and the failure is logged for staff (the call log has the details).
            logger.warning(
                "meeting did not follow its calendar event",
                extra={"meeting": meeting.pk, "event": event_id},
                exc_info=True,
            )
    return changed


@receiver(calendar_event_changed, dispatch_uid="scheduling.meeting_follow_calendar")
def on_calendar_event_changed(
    sender, *, connection_id, event_id, start=None, end=None, cancelled=False, origin="sync", **kwargs
):
    if origin == "hub":
        return
    meeting_follow_calendar(connection_id=connection_id, event_id=event_id, start=start, end=end, cancelled=cancelled)
