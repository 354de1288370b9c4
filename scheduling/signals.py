"""The hook between calendars and meetings (issue 19 point 6).

The calendar sync sends `calendar_event_changed` after it stored a changed
event (a push or an incremental sync), with the provider's ids:

    calendar_event_changed.send(
        sender=CalendarEvent, connection_id=5, event_id="evt123",
        start=<aware datetime or None>, end=<aware datetime or None>, cancelled=False, origin="sync",
    )

`origin="hub"` marks a change the hub itself just made through its own API; it
is ignored here, so a meeting moved by the hub never bounces back.
`origin="api"` is a person's change through the calendar API
(/api/v1/calendars/.../events/): meetings follow it like a synced change. Receivers
must be idempotent: duplicates and out-of-order notifications arrive.
"""

from django.dispatch import Signal

calendar_event_changed = Signal()
