"""Availability: the common free slots of several people, ranked by everyone's working hours.

    POST /api/v1/scheduling/availability/
    {"users": [{"id": 7}, {"id": 9, "working_hours": {"time_zone": "America/New_York"}}],
     "start": "2026-12-07T00:00:00Z", "end": "2026-12-12T00:00:00Z", "duration_minutes": 30}

How it works
- Each participant's busy time comes from every calendar Connection they hold
  (capability "calendar"; any number of Google and Microsoft accounts each):
  Google `freebusy.query` with the connection's own calendars in one request
  (the primary plus those the user owns and shows, `_calendar_ids`; never
  subscribed or shared ones), Graph `getSchedule` for the mailbox, never
  event-by-event scans. getSchedule answers the mailbox's free/busy, which
  Exchange keeps from the mailbox's default calendar: events on other calendars
  of that Outlook account do not make the user busy (as in Outlook's own
  Scheduling Assistant); put them in the default calendar to count.
  All connections are asked at once (bounded by AVAILABILITY_CONCURRENCY),
  each request one gateway attempt (scheduling.providers.freebusy).
- Each connection's answer is cached for AVAILABILITY_CACHE_SECONDS per
  (connection, calendars, window rounded out to the hour), so a repeated
  question is answered without asking again; `busy_cache_invalidate` drops it
  when a calendar push arrives.
- `free_slots` (pure, slots.py) cuts the window into candidates on a grid of
  `granularity_minutes` (aligned to UTC), keeps those that overlap nobody's
  busy time, and ranks them.

Ranking (documented in the API answer too): slots that lie wholly inside the
working hours of more participants come first; among those, the higher mean
share of the slot inside each participant's working hours; then the earlier
start. `working_hours_policy` filters before ranking: "required" keeps only
slots inside everyone's working hours, "preferred" (the default) keeps slots
inside at least someone's, "any" keeps every free slot.

Working hours, per participant, first that applies: what the request says for
that user (field by field); the user's own working hours at Microsoft
(getSchedule's `workingHours`, a mailbox setting, Windows zone names mapped to
IANA); the request's `time_zone` and `working_hours`; Monday to Friday
09:00-17:00 UTC. Hours are wall-clock times in the participant's zone, so a
09:00 start stays 09:00 across a DST change; an end at or before the start
runs past midnight (start == end is around the clock).

Whom a caller may ask about: themself; any active user if the caller is staff;
otherwise active users who share a group (django.contrib.auth Group: the
hub's teams / organisations) with the caller. Anyone else answers 404
user_not_found, exactly like an id that does not exist. Only the common free
slots leave the hub: no busy interval, event, calendar id or account of
another user is ever in the answer.

Limits: a window of at most AVAILABILITY_MAX_WINDOW_DAYS days (31: Graph's
getSchedule takes less than 42), at most AVAILABILITY_MAX_USERS participants.
"""

from .busy import CALENDAR_PROVIDERS, Source, _calendar_ids, _version_key, busy_cache_invalidate, busy_for
from .find import RANKING, availability_find
from .people import visible_users, zone
from .slots import (
    DEFAULT_DAYS,
    DEFAULT_END,
    DEFAULT_START,
    EPOCH,
    GRANULARITIES,
    POLICIES,
    Slot,
    WorkingHours,
    free_slots,
)

__all__ = [
    "CALENDAR_PROVIDERS",
    "DEFAULT_DAYS",
    "DEFAULT_END",
    "DEFAULT_START",
    "EPOCH",
    "GRANULARITIES",
    "POLICIES",
    "RANKING",
    "Slot",
    "Source",
    "WorkingHours",
    "_calendar_ids",
    "_version_key",
    "availability_find",
    "busy_cache_invalidate",
    "busy_for",
    "free_slots",
    "visible_users",
    "zone",
]
