"""Scheduling's webhooks (found by the inbox's autodiscovery of `<app>.webhooks`): Zoom, Webex, Google Meet, and
calendar push (Google Calendar channels, Graph calendar subscriptions: calendars.py).

Zoom and Webex apply events through `scheduling.lifecycle` (state with the event's time,
attendance stretches) and book recordings through `services.recordings_upsert`
(copied to the hub's storage with the owner's opt-in, `scheduling.recordings`).

Google Meet (google_meet.py): a Google Workspace Events subscription per Meet space
(scheduling.meet_events), delivered through the hub's Pub/Sub topic as an OIDC-signed
push; the worker reads what each event names from the Meet REST API and applies it the
same way. It needs GOOGLE_MEET_EVENTS_TOPIC, the push settings and the connection's
`meeting_records` grant; without them Meet recordings are read on demand only.

Teams (teams.py, POST /webhooks/teams/; scheduling.teams_lifecycle): Graph subscriptions per meeting on its
recordings and transcripts with the organizer's delegated connection; attendance and the real start/end from
the attendance report after the call. Graph's live meetingCallEvents need an application permission and
encrypted rich notifications: subscribed with the hub app's own token only when MICROSOFT_APP_TENANT_ID and
the TEAMS_CALL_EVENTS_* certificate are set. callRecords (application, tenant-wide) are not used.
"""

from . import calendars, google_meet, teams, webex, zoom
from .calendars import google_calendar_webhook, outlook_calendar_webhook
from .google_meet import google_meet_webhook
from .teams import teams_webhook
from .zoom import zoom_webhook

__all__ = [
    "calendars",
    "google_calendar_webhook",
    "google_meet",
    "google_meet_webhook",
    "outlook_calendar_webhook",
    "teams",
    "teams_webhook",
    "webex",
    "zoom",
    "zoom_webhook",
]
