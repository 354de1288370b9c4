"""Microsoft calendars over Microsoft Graph with httpx: the only module that speaks Graph for calendars.

Same client choice as Teams and mail: plain httpx with the connection's token
(`oauth.bearer_auth`), one request = one gateway attempt (provider
`microsoft_calendar`) = one ProviderCall, Graph's errors translated once
(freebusy.graph_translate: 429/503 with Retry-After retryable, other 4xx
permanent).

Times: Graph's dateTimeTimeZone names Windows zones ("Pacific Standard
Time"); they are mapped to IANA on the way in and IANA to Windows on the way
out. An event's own zone is `originalStartTimeZone`. All-day events are
midnight-to-midnight dateTimes with isAllDay: only their dates are kept.

Recurrence: recurrence.to_graph / from_graph. Graph keeps no exclusion list:
on a write, an EXDATE must name a planned occurrence of the series (else a 400
naming it, before anything is sent), and that occurrence is deleted right
after the series is written (found through /instances by its originalStart;
one already gone counts as done). On a read, a series master's deleted
occurrences come back as EXDATE lines: Graph lists them in
`cancelledOccurrences` ("OID.{seriesMasterId}.{yyyy-mm-dd}", the occurrence's
date in the series' own zone), which it returns only on a GET of the master
that names it in `$select` (EVENT_SELECT), so every read of one event uses it
and a write that answers a series master is read back that way. A timed
series gets that date at its own wall-clock start time (in the event's zone,
so the EXDATE is right across a DST change), an all-day series the date.
Leaving an EXDATE out of a later write does not bring a deleted occurrence back
(Graph cannot restore one); the answer shows what Graph keeps.

Sync: `/me/calendars/{id}/calendarView/delta` over a window around now
(Graph's delta for events works on a calendar view): the first round returns
every instance (singles, occurrences, exceptions) and a deltaLink, later
rounds only changes (`@removed` for deleted ones). A series master is not part
of a calendar view, so it is read (GET /me/events/{seriesMasterId}) whenever a
round shows one of its occurrences new, changed or removed (a deleted
occurrence changes only the master's cancelledOccurrences); a master that is
gone by then was deleted with its series. An expired delta token is 410 Gone
(syncStateNotFound): SyncTokenExpired, the caller starts over.
"""

from .bodies import VISIBILITY, _check_exdates, _wall, event_body
from .client import (
    GRAPH,
    PROVIDER,
    GraphCalendarAdapter,
    SyncTokenExpired,
    _call,
    _client,
    _gone,
    _pages,
    base,
)
from .delta import events_sync, subscribe, subscription_delete, subscription_renew, subscriptions_to
from .events import (
    _exclude,
    _mailbox_zone,
    calendars_list,
    event_delete,
    event_get,
    event_insert,
    event_patch,
    instance_at,
    is_exception,
)
from .shapes import (
    EVENT_SELECT,
    RESPONSES,
    SENSITIVITY,
    _cancelled_exdates,
    _original_start,
    _reminders,
    event_data,
)

__all__ = [
    "EVENT_SELECT",
    "GRAPH",
    "PROVIDER",
    "RESPONSES",
    "SENSITIVITY",
    "VISIBILITY",
    "GraphCalendarAdapter",
    "SyncTokenExpired",
    "_call",
    "_cancelled_exdates",
    "_check_exdates",
    "_client",
    "_exclude",
    "_gone",
    "_mailbox_zone",
    "_original_start",
    "_pages",
    "_reminders",
    "_wall",
    "base",
    "calendars_list",
    "event_body",
    "event_data",
    "event_delete",
    "event_get",
    "event_insert",
    "event_patch",
    "events_sync",
    "instance_at",
    "is_exception",
    "subscribe",
    "subscription_delete",
    "subscription_renew",
    "subscriptions_to",
]
