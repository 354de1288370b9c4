"""The slot algorithm on its own: free_slots and WorkingHours, with examples and hypothesis properties."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduling.availability import WorkingHours, free_slots
from scheduling.providers.freebusy import merge

NY, BERLIN, TOKYO = ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Tokyo")
M = timedelta(minutes=1)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def around_the_clock(tz=UTC):
    return WorkingHours(time_zone=tz, days=frozenset(range(1, 8)), start=time(0), end=time(0))


def test_merge_joins_overlapping_and_touching_intervals():
    a = [(utc(2026, 12, 7, 10), utc(2026, 12, 7, 11)), (utc(2026, 12, 7, 9), utc(2026, 12, 7, 10))]
    b = [(utc(2026, 12, 7, 10, 30), utc(2026, 12, 7, 12)), (utc(2026, 12, 7, 13), utc(2026, 12, 7, 14))]
    assert merge(a + b) == [(utc(2026, 12, 7, 9), utc(2026, 12, 7, 12)), (utc(2026, 12, 7, 13), utc(2026, 12, 7, 14))]


def test_slots_avoid_everyones_busy_time_on_the_grid():
    start, end = utc(2026, 12, 7, 9), utc(2026, 12, 7, 12)
    busy = {1: [(utc(2026, 12, 7, 9), utc(2026, 12, 7, 10))], 2: [(utc(2026, 12, 7, 10, 30), utc(2026, 12, 7, 11, 10))]}
    hours = {1: around_the_clock(), 2: around_the_clock()}
    slots = free_slots(start=start, end=end, duration=30 * M, busy=busy, hours=hours, granularity=15 * M)
    assert [s.start for s in slots] == [utc(2026, 12, 7, 10), utc(2026, 12, 7, 11, 15), utc(2026, 12, 7, 11, 30)]
    assert all(s.end - s.start == 30 * M for s in slots)


def test_ranking_puts_slots_inside_more_peoples_hours_first_then_earlier():
    # Ada works 09-17 in Berlin, Bo 09-17 in New York: on a winter Monday they overlap 14:00-16:00 UTC.
    monday = date(2026, 12, 7)
    start, end = utc(2026, 12, 7, 6), utc(2026, 12, 7, 23)
    hours = {"ada": WorkingHours(time_zone=BERLIN), "bo": WorkingHours(time_zone=NY)}
    slots = free_slots(start=start, end=end, duration=60 * M, busy={}, hours=hours, granularity=60 * M)
    both = [s for s in slots if s.inside == 2]
    assert [s.start.hour for s in both] == [14, 15]
    assert slots[:2] == both
    assert monday.isoweekday() == 1
    # Next: inside one person's hours, every one with score 0.5 (wholly inside one, wholly outside the other).
    assert {s.score for s in slots[2:]} == {0.5}
    assert [s.start for s in slots[2:]] == sorted(s.start for s in slots[2:])


def test_a_half_inside_slot_ranks_between_wholly_inside_and_outside():
    start, end = utc(2026, 12, 7, 15), utc(2026, 12, 7, 19)
    hours = {1: WorkingHours(time_zone=UTC, start=time(9), end=time(17))}
    slots = free_slots(start=start, end=end, duration=60 * M, busy={}, hours=hours, granularity=30 * M, policy="any")
    assert [(s.start.strftime("%H:%M"), s.score, s.inside) for s in slots] == [
        ("15:00", 1.0, 1),
        ("15:30", 1.0, 1),
        ("16:00", 1.0, 1),
        ("16:30", 0.5, 0),
        ("17:00", 0.0, 0),
        ("17:30", 0.0, 0),
        ("18:00", 0.0, 0),
    ]


def test_a_start_skipped_by_dst_is_the_moment_the_clock_jumps():
    # 8 March 2026 in New York: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 never happens.
    hours = WorkingHours(time_zone=NY, days=frozenset({7}), start=time(2, 30), end=time(4))
    assert hours.intervals(utc(2026, 3, 8), utc(2026, 3, 9)) == [(utc(2026, 3, 8, 7), utc(2026, 3, 8, 8))]


def test_policies_filter_before_ranking():
    start, end = utc(2026, 12, 7, 0), utc(2026, 12, 8, 0)
    hours = {1: WorkingHours(time_zone=UTC), 2: WorkingHours(time_zone=TOKYO)}
    kwargs = dict(start=start, end=end, duration=60 * M, busy={}, hours=hours, granularity=60 * M)
    required = free_slots(policy="required", **kwargs)
    preferred = free_slots(policy="preferred", **kwargs)
    every = free_slots(policy="any", **kwargs)
    assert required == []  # Tokyo's 09-17 is 00-08 UTC: no common hour
    assert len(every) == 24
    assert {s.start.hour for s in preferred} == set(range(0, 8)) | set(range(9, 17))
    assert all(s.score > 0 for s in preferred)


def test_overnight_hours_run_past_midnight():
    hours = WorkingHours(time_zone=UTC, days=frozenset({1}), start=time(22), end=time(6))
    intervals = hours.intervals(utc(2026, 12, 7, 0), utc(2026, 12, 9, 0))
    assert intervals == [(utc(2026, 12, 7, 22), utc(2026, 12, 8, 6))]


@pytest.mark.parametrize(
    "tz, before, after",
    [
        # New York springs forward on 8 March 2026 and falls back on 1 November 2026.
        (NY, date(2026, 3, 6), date(2026, 3, 9)),
        (NY, date(2026, 10, 30), date(2026, 11, 2)),
        # Berlin: 29 March and 25 October 2026.
        (BERLIN, date(2026, 3, 27), date(2026, 3, 30)),
        (BERLIN, date(2026, 10, 23), date(2026, 10, 26)),
    ],
)
def test_working_hours_keep_their_wall_clock_across_dst(tz, before, after):
    hours = WorkingHours(time_zone=tz)
    start = datetime.combine(before, time(0), tzinfo=UTC)
    end = datetime.combine(after + timedelta(days=1), time(0), tzinfo=UTC)
    intervals = hours.intervals(start, end)
    local = [(s.astimezone(tz), e.astimezone(tz)) for s, e in intervals]
    assert [(s.date(), s.time(), e.time()) for s, e in local] == [
        (before, time(9), time(17)),
        (after, time(9), time(17)),
    ]
    # The UTC offset changed in between: the same wall clock is a different UTC hour.
    assert intervals[0][0].hour != intervals[1][0].hour


def test_a_fully_busy_window_has_no_slots():
    start, end = utc(2026, 12, 7, 9), utc(2026, 12, 7, 10)
    slots = free_slots(
        start=start, end=end, duration=15 * M, busy={1: [(start - M, end + M)]}, hours={1: around_the_clock()}
    )
    assert slots == []


def test_limit_keeps_the_best():
    start, end = utc(2026, 12, 7, 0), utc(2026, 12, 8, 0)
    slots = free_slots(
        start=start, end=end, duration=30 * M, busy={}, hours={1: WorkingHours(time_zone=UTC)}, policy="any", limit=3
    )
    assert [s.start for s in slots] == [utc(2026, 12, 7, 9), utc(2026, 12, 7, 9, 15), utc(2026, 12, 7, 9, 30)]


# --- Properties ------------------------------------------------------------------------

BASE = utc(2026, 3, 1)  # March: both DST changes of New York and Berlin fall inside the generated windows
ZONES = [UTC, NY, BERLIN, TOKYO, ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Lord_Howe")]

minutes = st.integers(min_value=0, max_value=40 * 24 * 60)


@st.composite
def intervals(draw):
    start = draw(minutes)
    length = draw(st.integers(min_value=1, max_value=8 * 60))
    return (BASE + start * M, BASE + (start + length) * M)


@st.composite
def hours(draw):
    return WorkingHours(
        time_zone=draw(st.sampled_from(ZONES)),
        days=frozenset(draw(st.sets(st.integers(1, 7), min_size=1))),
        start=time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 30]))),
        end=time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 30]))),
    )


@st.composite
def problems(draw):
    offset = draw(st.integers(min_value=0, max_value=30 * 24 * 60))
    span = draw(st.integers(min_value=60, max_value=10 * 24 * 60))
    start = BASE + offset * M
    people = draw(st.integers(min_value=1, max_value=4))
    busy = {p: draw(st.lists(intervals(), max_size=12)) for p in range(people)}
    wh = {p: draw(hours()) for p in range(people)}
    return dict(
        start=start,
        end=start + span * M,
        duration=draw(st.sampled_from([15, 30, 45, 60, 90])) * M,
        busy=busy,
        hours=wh,
        granularity=draw(st.sampled_from([5, 15, 30, 60])) * M,
        policy=draw(st.sampled_from(["required", "preferred", "any"])),
    )


@settings(max_examples=80, deadline=None)
@given(problems())
def test_property_slots_are_free_inside_the_window_and_of_the_duration(problem):
    slots = free_slots(**problem)
    for slot in slots:
        assert slot.end - slot.start == problem["duration"]
        assert problem["start"] <= slot.start and slot.end <= problem["end"]
        for person_busy in problem["busy"].values():
            for s, e in person_busy:
                assert slot.end <= s or slot.start >= e, f"{slot} overlaps busy {s}-{e}"
    keys = [(-s.inside, -s.score, s.start) for s in slots]
    assert keys == sorted(keys)


@settings(max_examples=80, deadline=None)
@given(problems())
def test_property_required_slots_sit_inside_everyones_local_working_hours(problem):
    problem["policy"] = "required"
    for slot in free_slots(**problem):
        for wh in problem["hours"].values():
            assert _inside_local(slot.start, slot.end, wh), (slot, wh)


def _inside_local(start, end, wh):
    """Independent check by walking the slot minute by minute in local time."""
    moment = start
    while moment < end:
        local = moment.astimezone(wh.time_zone)
        if not _working_at(local, wh):
            return False
        moment += 5 * M
    return True


def _working_at(local, wh):
    t, day = local.time().replace(tzinfo=None), local.date()
    if wh.end > wh.start:
        return day.isoweekday() in wh.days and wh.start <= t < wh.end
    # Past midnight: either the evening part of a working day or the morning part after one.
    evening = day.isoweekday() in wh.days and t >= wh.start
    morning = (day - timedelta(days=1)).isoweekday() in wh.days and t < wh.end
    return evening or morning


@settings(max_examples=60, deadline=None)
@given(hours(), st.integers(min_value=0, max_value=60 * 24 * 60))
def test_property_working_intervals_are_local_working_time(wh, offset):
    start = BASE + offset * M
    end = start + timedelta(days=10)
    for s, e in wh.intervals(start, end):
        assert start <= s < e <= end
        # Sample the edges and the middle: each is inside working time on the local clock.
        for moment in (s, s + (e - s) / 2, e - M):
            assert _working_at(moment.astimezone(wh.time_zone), wh), (wh, moment)
