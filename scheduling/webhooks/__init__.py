"""Scheduling's webhooks (found by the inbox's autodiscovery of `<app>.webhooks`): Zoom, Webex, and calendar push
(Google Calendar channels, Graph calendar subscriptions: calendars.py).

Zoom and Webex apply events through `scheduling.lifecycle` (state with the event's time,
attendance stretches) and book recordings through `services.recordings_upsert`
(copied to the hub's storage with the owner's opt-in, `scheduling.recordings`).

Google Meet and Teams send no meeting lifecycle webhooks to a delegated app
(Google's Workspace Events API delivers through a Pub/Sub topic; Graph's
meetingCallEvents and callRecords notifications need application permissions);
their recordings are read on demand.
"""

from . import calendars, webex, zoom
from .calendars import google_calendar_webhook, outlook_calendar_webhook
from .zoom import zoom_webhook

__all__ = [
    "calendars",
    "google_calendar_webhook",
    "outlook_calendar_webhook",
    "webex",
    "zoom",
    "zoom_webhook",
]
