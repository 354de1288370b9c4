"""Recurrence: RRULE <-> Graph patternedRecurrence both ways (property-based), expansion across DST, bad rules."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.errors import DomainError
from scheduling.calendars import recurrence

DAYS = recurrence.GRAPH_DAYS
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata", "Australia/Sydney"]


@st.composite
def patterns(draw):
    kind = draw(
        st.sampled_from(["daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly"])
    )
    pattern = {"type": kind, "interval": draw(st.integers(1, 99)), "firstDayOfWeek": draw(st.sampled_from(DAYS))}
    if kind == "weekly" or kind.startswith("relative"):
        days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True))
        pattern["daysOfWeek"] = days
    if kind.startswith("relative"):
        pattern["index"] = draw(st.sampled_from(["first", "second", "third", "fourth", "last"]))
    if kind.startswith("absolute"):
        pattern["dayOfMonth"] = draw(st.integers(1, 28))
    if kind.endswith("Yearly"):
        pattern["month"] = draw(st.integers(1, 12))
    zone = draw(st.sampled_from(ZONES))
    start = draw(st.dates(dt.date(2024, 1, 1), dt.date(2030, 12, 31)))
    rng = {"startDate": start.isoformat(), "recurrenceTimeZone": zone}
    end = draw(st.sampled_from(["noEnd", "numbered", "endDate"]))
    if end == "numbered":
        rng.update(type="numbered", numberOfOccurrences=draw(st.integers(1, 999)))
    elif end == "endDate":
        rng.update(type="endDate", endDate=(start + dt.timedelta(days=draw(st.integers(0, 2000)))).isoformat())
    else:
        rng.update(type="noEnd")
    return {"pattern": pattern, "range": rng}, start, zone


@settings(max_examples=300, deadline=None)
@given(patterns(), st.booleans())
def test_a_graph_pattern_survives_the_trip_through_an_rrule(case, all_day):
    graph, start, zone = case
    parts = recurrence.from_graph(graph, tz_name=zone, all_day=all_day)
    line = recurrence.format_rule(parts)
    again = recurrence.to_graph(recurrence.parse_rule(line), first_day=start, tz_name=zone)
    assert again == graph, line


@settings(max_examples=300, deadline=None)
@given(patterns(), st.booleans())
def test_an_rrule_graph_can_express_survives_the_trip_through_a_pattern(case, all_day):
    graph, start, zone = case
    line = recurrence.format_rule(recurrence.from_graph(graph, tz_name=zone, all_day=all_day))
    back = recurrence.from_graph(
        recurrence.to_graph(recurrence.parse_rule(line), first_day=start, tz_name=zone), tz_name=zone, all_day=all_day
    )
    assert recurrence.format_rule(back) == line


@pytest.mark.parametrize(
    ("rule", "pattern"),
    [
        ("RRULE:FREQ=DAILY;INTERVAL=3;COUNT=5", {"type": "daily", "interval": 3}),
        ("RRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR", {"type": "weekly", "interval": 1, "daysOfWeek": list(DAYS[:5])}),
        ("RRULE:FREQ=WEEKLY", {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]}),
        ("RRULE:FREQ=MONTHLY", {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 2}),
        (
            "RRULE:FREQ=MONTHLY;BYDAY=-1FR",
            {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
        ),
        (
            "RRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1",
            {"type": "relativeMonthly", "interval": 1, "daysOfWeek": list(DAYS[:5]), "index": "first"},
        ),
        ("RRULE:FREQ=YEARLY", {"type": "absoluteYearly", "interval": 1, "dayOfMonth": 2, "month": 3}),
        (
            "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=4TH",
            {"type": "relativeYearly", "interval": 1, "daysOfWeek": ["thursday"], "index": "fourth", "month": 11},
        ),
    ],
)
def test_rules_google_users_write_map_to_the_pattern_outlook_shows(rule, pattern):
    # The series starts on Monday March 2, 2026: a rule without days takes the start's.
    got = recurrence.to_graph(recurrence.parse_rule(rule), first_day=dt.date(2026, 3, 2), tz_name="UTC")["pattern"]
    assert {k: v for k, v in got.items() if k != "firstDayOfWeek"} == pattern


def test_until_becomes_the_local_end_date_and_count_a_numbered_range():
    parts = recurrence.parse_rule("RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20260601T035959Z")
    rng = recurrence.to_graph(parts, first_day=dt.date(2026, 3, 2), tz_name="America/New_York")["range"]
    assert rng == {
        "type": "endDate",
        "endDate": "2026-05-31",
        "startDate": "2026-03-02",
        "recurrenceTimeZone": "America/New_York",
    }


@pytest.mark.parametrize(
    "line",
    [
        "RRULE:FREQ=WEEKLY;BYDAY=XX",
        "RRULE:INTERVAL=2",
        "RRULE:FREQ=DAILY;COUNT=0",
        "RRULE:FREQ=DAILY;UNTIL=tomorrow",
        "RRULE:FREQ",
    ],
)
def test_a_malformed_rule_is_a_400_naming_recurrence(line):
    with pytest.raises(DomainError) as refused:
        recurrence.split([line])
    assert refused.value.status == 400 and refused.value.code == "invalid_recurrence"


def test_rdate_and_a_lonely_exdate_are_refused():
    for lines in (["RRULE:FREQ=DAILY", "RDATE:20260301T090000Z"], ["EXDATE:20260301T090000Z"]):
        with pytest.raises(DomainError):
            recurrence.split(lines)


# --- Wall-clock across DST -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "utc_hours"),
    [
        # New York: EST (UTC-5) until March 8, EDT (UTC-4) until November 1, EST again.
        (
            "America/New_York",
            {dt.date(2026, 3, 2): 14, dt.date(2026, 3, 9): 13, dt.date(2026, 10, 26): 13, dt.date(2026, 11, 2): 14},
        ),
        # Berlin: CET (UTC+1) until March 29, CEST (UTC+2) until October 25, CET again (and through November).
        (
            "Europe/Berlin",
            {dt.date(2026, 3, 23): 8, dt.date(2026, 3, 30): 7, dt.date(2026, 10, 19): 7, dt.date(2026, 11, 2): 8},
        ),
    ],
)
def test_a_weekly_meeting_keeps_its_wall_clock_across_the_dst_changes(zone, utc_hours):
    start = dt.datetime(2026, 2, 23, 9, 0, tzinfo=ZoneInfo(zone))
    found = recurrence.occurrences(
        ["RRULE:FREQ=WEEKLY;BYDAY=MO"],
        start=start.astimezone(dt.UTC),
        tz_name=zone,
        all_day=False,
        window_start=dt.datetime(2026, 2, 1, tzinfo=dt.UTC),
        window_end=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
    )
    assert len(found) == 41
    assert all(o.astimezone(ZoneInfo(zone)).time() == dt.time(9, 0) for o in found)
    by_day = {o.astimezone(ZoneInfo(zone)).date(): o.hour for o in found}
    assert {day: by_day[day] for day in utc_hours} == utc_hours


def test_exdate_in_the_events_zone_removes_that_occurrence_only():
    zone = "America/New_York"
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)
    found = recurrence.occurrences(
        ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3", "EXDATE;TZID=America/New_York:20260309T090000"],
        start=start,
        tz_name=zone,
        all_day=False,
        window_start=start,
        window_end=start + dt.timedelta(days=60),
    )
    assert [o.isoformat() for o in found] == ["2026-03-02T14:00:00+00:00", "2026-03-16T13:00:00+00:00"]


def test_an_all_day_series_is_dates_and_never_shifts():
    found = recurrence.occurrences(
        ["RRULE:FREQ=WEEKLY;BYDAY=SU;UNTIL=20261108"],
        start=dt.date(2026, 3, 1),
        tz_name="America/New_York",
        all_day=True,
        window_start=dt.date(2026, 3, 1),
        window_end=dt.date(2026, 12, 31),
    )
    assert found[0] == dt.date(2026, 3, 1) and dt.date(2026, 3, 8) in found and dt.date(2026, 11, 1) in found
    assert found[-1] == dt.date(2026, 11, 8) and all(d.weekday() == 6 for d in found)


def test_splitting_a_counted_series_counts_the_excluded_occurrences_too():
    zone = "Europe/Berlin"
    lines = ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=10", "EXDATE;TZID=Europe/Berlin:20260309T090000"]
    first = dt.datetime(2026, 3, 2, 9, tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)
    split_at = dt.datetime(2026, 3, 23, 9, tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)
    kwargs = {"original_start": split_at, "tz_name": zone, "all_day": False, "series_start": first}
    assert recurrence.truncated_before(lines, **kwargs) == [
        "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3",
        "EXDATE;TZID=Europe/Berlin:20260309T090000",
    ]
    assert recurrence.remaining(lines, **kwargs) == ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=7"]
