"""The pure part of availability: working hours in UTC, free slots on a grid, and their ranking."""

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..providers.freebusy import merge

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GRANULARITIES = (5, 10, 15, 30, 60)
POLICIES = ("required", "preferred", "any")
DEFAULT_DAYS = (1, 2, 3, 4, 5)
DEFAULT_START, DEFAULT_END = time(9), time(17)


@dataclass(frozen=True)
class WorkingHours:
    """Wall-clock hours on ISO weekdays (1 = Monday) in an IANA zone; end <= start runs past midnight."""

    time_zone: ZoneInfo
    days: frozenset = frozenset(DEFAULT_DAYS)
    start: time = DEFAULT_START
    end: time = DEFAULT_END

    def intervals(self, window_start, window_end):
        """The working intervals inside the window, in UTC, merged.

        Each local day is expanded on its own calendar date, so DST changes the
        UTC offset, never the wall-clock hours. A start that does not exist
        that day (inside a spring-forward gap) is the instant the clock jumps past it.
        """
        tz = self.time_zone
        day = window_start.astimezone(tz).date() - timedelta(days=1)
        last = window_end.astimezone(tz).date()
        out = []
        while day <= last:
            if day.isoweekday() in self.days:
                start = _instant(day, self.start, tz)
                end = _instant(day if self.end > self.start else day + timedelta(days=1), self.end, tz)
                start, end = max(start, window_start), min(end, window_end)
                if end > start:
                    out.append((start, end))
            day += timedelta(days=1)
        return merge(out)


def _instant(day, wall, tz):
    """The UTC instant of a wall-clock time on a local date; a time DST skips is the moment the clock jumps past it.

    A time that occurs twice (autumn) is its first occurrence (fold=0).
    """
    local = datetime.combine(day, wall, tzinfo=tz)
    moment = local.astimezone(UTC)
    naive = local.replace(tzinfo=None)
    if moment.astimezone(tz).replace(tzinfo=None) == naive:
        return moment
    # In a spring-forward gap: fold=1 reads it with the later offset, an instant before the jump.
    moment = min(moment, local.replace(fold=1).astimezone(UTC))
    while moment.astimezone(tz).replace(tzinfo=None) < naive:
        moment += timedelta(minutes=1)
    return moment


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    score: float  # mean share of the slot inside each participant's working hours, 0..1
    inside: int  # participants whose working hours hold the whole slot
    outside: tuple  # keys of the participants whose working hours do not hold all of it


def _ceil_to_grid(moment, step):
    steps = -(-(moment - EPOCH) // step)
    return EPOCH + steps * step


def free_slots(*, start, end, duration, busy, hours, granularity=timedelta(minutes=15), policy="preferred", limit=None):
    """The ranked free slots of length `duration` in [start, end) for every participant.

    busy: {key: [(start, end)]} aware datetimes, any order, may overlap.
    hours: {key: WorkingHours}, one per participant (participants without busy time are free).
    Candidates start on a UTC-aligned grid of `granularity`; see the module docstring for ranking and `policy`.
    """
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}")
    blocked = merge([(max(s, start), min(e, end)) for intervals in busy.values() for s, e in intervals])
    gaps, cursor = [], start
    for s, e in blocked:
        if s > cursor:
            gaps.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < end:
        gaps.append((cursor, end))

    # Integer microseconds from here on: exact comparisons, and several times faster than datetime arithmetic.
    step, length = _us(granularity), _us(duration)
    candidates = []
    for gap_start, gap_end in gaps:
        moment, last = _us(_ceil_to_grid(gap_start, granularity) - EPOCH), _us(gap_end - EPOCH) - length
        candidates.extend(range(moment, last + 1, step))
    keys = list(hours)
    covered = {}
    for k in keys:
        working = [(_us(s - EPOCH), _us(e - EPOCH)) for s, e in hours[k].intervals(start, end)]
        before_start = _worked_before(working, candidates)
        before_end = _worked_before(working, [c + length for c in candidates])
        covered[k] = [e - s for s, e in zip(before_start, before_end, strict=True)]
    slots = []
    for n, moment in enumerate(candidates):
        outside = tuple(k for k in keys if covered[k][n] < length)
        score = sum(covered[k][n] for k in keys) / (length * len(keys)) if keys else 1.0
        if policy == "any" or (policy == "preferred" and score > 0) or (policy == "required" and not outside):
            slots.append((-(len(keys) - len(outside)), -round(score, 4), moment, outside))
    slots.sort(key=lambda row: row[:3])
    if limit is not None:
        slots = slots[:limit]
    return [
        Slot(EPOCH + timedelta(microseconds=m), EPOCH + timedelta(microseconds=m + length), -score, -inside, outside)
        for inside, score, m, outside in slots
    ]


def _us(delta):
    return delta // timedelta(microseconds=1)


def _worked_before(working, points):
    """For each of the ascending `points`: working time before it (sorted disjoint `working`, all in µs)."""
    out, i, done = [], 0, 0
    for x in points:
        while i < len(working) and working[i][1] <= x:
            done += working[i][1] - working[i][0]
            i += 1
        partial = x - working[i][0] if i < len(working) and working[i][0] < x else 0
        out.append(done + partial)
    return out
