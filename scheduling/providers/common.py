"""What every meeting adapter takes and returns: the hub's own shapes, never a vendor's SDK object.

`MeetingSpec` is the hub's request (create: every field; update: only what
changes, the rest None). `ProviderMeeting` is the provider's answer: the join
URL, passcode and dial-in exactly as the provider gave them, nothing invented.
"""

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MeetingSpec:
    topic: str | None = None
    agenda: str | None = None
    start_time: dt.datetime | None = None
    duration_minutes: int | None = None
    time_zone: str | None = None
    # [{"email", "name"}]
    participants: tuple = ()
    settings: dict = field(default_factory=dict)
    # [{"name", "participants": [emails]}]
    breakout_rooms: tuple = ()

    @property
    def end_time(self):
        if self.start_time is None or self.duration_minutes is None:
            return None
        return self.start_time + dt.timedelta(minutes=self.duration_minutes)


@dataclass(frozen=True)
class ProviderMeeting:
    id: str
    join_url: str
    uuid: str = ""
    passcode: str = ""
    dial_in: list = field(default_factory=list)
    raw: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RecordingFile:
    id: str
    file_type: str
    recording_type: str
    size_bytes: int
    download_url: str
    recording_start: str
    recording_end: str


def utc_z(value):
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
