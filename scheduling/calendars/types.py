"""What the calendar adapters take and return: the hub's own shapes, never a vendor's object."""

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CalendarData:
    external_id: str
    name: str
    primary: bool
    time_zone: str
    access_role: str
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class EventData:
    """One event as the provider gave it, normalised (times as UTC + IANA zone, all-day as dates)."""

    external_id: str
    status: str = "confirmed"
    etag: str = ""
    ical_uid: str = ""
    title: str = ""
    description: str = ""
    location: str = ""
    all_day: bool = False
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    time_zone: str = "UTC"
    attendees: list = field(default_factory=list)
    reminders: dict = field(default_factory=dict)
    visibility: str = "default"
    recurrence: list = field(default_factory=list)
    recurring_event_id: str = ""
    original_start: dt.datetime | None = None
    html_link: str = ""
    provider_updated_at: dt.datetime | None = None
    raw: dict = field(default_factory=dict, repr=False)

    def row_fields(self):
        values = dict(self.__dict__)
        values.pop("external_id")
        return values


@dataclass(frozen=True)
class EventWrite:
    """The hub's write: every field for a create, only what changes for an update (None = unchanged).

    Times are given as `start`/`end` (aware instants) with `time_zone`, or `start_date`/`end_date` when
    `all_day`; an update that moves the event carries all four plus `all_day` and `time_zone`.
    """

    title: str | None = None
    description: str | None = None
    location: str | None = None
    all_day: bool | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    time_zone: str | None = None
    attendees: list | None = None
    reminders: dict | None = None
    visibility: str | None = None
    recurrence: list | None = None

    @property
    def moves(self):
        return self.all_day is not None


@dataclass
class SyncResult:
    """A sync's changes: events to upsert (cancelled ones included), ids gone, the cursor to continue from."""

    events: list
    removed: list
    cursor: str
    full: bool
    # Graph reads a window (calendarView): a full sync says nothing about rows outside it. None = everything.
    window: tuple | None = None
