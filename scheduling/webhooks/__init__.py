"""Scheduling's webhooks (found by the inbox's autodiscovery of `<app>.webhooks`): Zoom, Webex, and calendar push
(Google Calendar channels, Graph calendar subscriptions: calendars.py).

Google Meet and Teams send no meeting lifecycle webhooks to a delegated app
(Google's Workspace Events API and Graph's meetingCallEvents need Pub/Sub or
application permissions); their recordings are read on demand.
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
