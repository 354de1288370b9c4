"""Meetings on video providers: create, change, cancel, recordings, and what webhooks tell us.

The provider is called first and its answer stamped on our row, so a meeting
row always carries the provider's real join URL and id; nothing is invented.

connections.py checks the provider and picks the OAuth connection, meetings.py
creates, changes and cancels (create_once.py: a Zoom or Webex create retried
under its Idempotency-Key adopts what a lost attempt made), recording_files.py
books and serves recordings.
"""

from .connections import _calendar_connection, _check_provider, _connection, _meeting_connection
from .meetings import meeting_cancel, meeting_create, meeting_stop_listening, meeting_update
from .recording_files import (
    parse_time,
    recording_from_token,
    recording_link_token,
    recording_open,
    recordings_refresh,
    recordings_upsert,
)

__all__ = [
    "_calendar_connection",
    "_check_provider",
    "_connection",
    "_meeting_connection",
    "meeting_cancel",
    "meeting_create",
    "meeting_stop_listening",
    "meeting_update",
    "parse_time",
    "recording_from_token",
    "recording_link_token",
    "recording_open",
    "recordings_refresh",
    "recordings_upsert",
]
