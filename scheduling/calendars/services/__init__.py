"""Calendar verbs: list calendars, read and write events (with recurrence scopes), for views, tasks and handlers.

Every write goes to the provider first through the connection's adapter
(google.py or graph/: one gateway attempt per request), and the local row is
then updated from the provider's answer, so a row always says what the provider
says. After a write the availability cache of that connection is dropped and
`calendar_event_changed` is sent with origin="api": a person moved or
cancelled the event through the hub, so an attached Zoom/Webex meeting follows
(only origin="hub", a meeting's own echo, is ignored by scheduling.consistency).
The sync that later reads the same change finds the etag it stored and sends
nothing. Sync (sync.py) keeps the rows current when the change comes from
elsewhere.

Recurring events: a series master row carries the RRULE/EXDATE lines; an
occurrence that was changed or cancelled has its own row (recurring_event_id +
original_start). `scope` says what a PATCH or DELETE of a recurring event
touches: `this` occurrence, `this and following` (the series is split: the
master ends before it, a new series takes over, and the old series' rows from
there on end with it, its exceptions deleted at the provider too) or `all`
(the master). On a
master, `this` and `following` name the occurrence by `original_start`.
"""

from .calendars import (
    CAL,
    KINDS,
    LIST_FRESH_SECONDS,
    NEED,
    _calendar_conn,
    _connection,
    _listed_key,
    adapter_for,
    calendar_get,
    calendar_list,
    calendar_push_start,
    calendars_refresh,
    push_automatic,
)
from .events import SCOPES, _scope, event_create, event_delete, event_get, event_list, event_update
from .inputs import VISIBILITY, _bad, _instant, event_write
from .rows import _stored, announce, event_store
from .series import _master, _occurrence_id, _original, _series_start, _split

__all__ = [
    "CAL",
    "KINDS",
    "LIST_FRESH_SECONDS",
    "NEED",
    "SCOPES",
    "VISIBILITY",
    "_bad",
    "_calendar_conn",
    "_connection",
    "_instant",
    "_listed_key",
    "_master",
    "_occurrence_id",
    "_original",
    "_scope",
    "_series_start",
    "_split",
    "_stored",
    "announce",
    "adapter_for",
    "calendar_get",
    "calendar_list",
    "calendar_push_start",
    "calendars_refresh",
    "event_create",
    "event_delete",
    "event_get",
    "event_list",
    "event_store",
    "event_update",
    "event_write",
    "push_automatic",
]
