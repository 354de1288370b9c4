"""GET /api/v1/calendars/{id}/events/?expand=true: series expanded into occurrences in a window, across DST."""

import pytest

from scheduling.calendars.sync import calendar_sync
from scheduling.models import Calendar

from ..factories import UserFactory

pytestmark = pytest.mark.django_db
CALS = "/api/v1/calendars/"
# Mondays 09:00-09:30 in New York from October 19, 2026: the clocks go back on November 1 (EDT -> EST).
FALL = {"start": "2026-10-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}


def calendar_id(client, external_id):
    listed = client.get(CALS).json()["results"]
    return next(c["id"] for c in listed if Calendar.objects.get(pk=c["id"]).external_id == external_id)


def url(cid, event=None):
    return f"{CALS}{cid}/events/" + (f"{event}/" if event else "")


def expanded(client, cid, **params):
    response = client.get(url(cid), {"expand": "true", **FALL, **params})
    assert response.status_code == 200, response.content
    return response.json()


def series(lines, **extra):
    return {
        "title": "Standup",
        "start": "2026-10-19T09:00:00",
        "end": "2026-10-19T09:30:00",
        "time_zone": "America/New_York",
        "recurrence": lines,
        **extra,
    }


@pytest.fixture
def google(user_client, gcal_conn, gcal):
    return calendar_id(user_client, "ada@example.com")


class TestAGoogleSeriesAcrossTheNovemberChange:
    @pytest.fixture
    def made(self, user_client, google):
        lines = ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;TZID=America/New_York:20261109T090000"]
        master = user_client.post(url(google), series(lines), format="json").json()
        # Nov 16 moved to 11:00 (EST: 16:00 UTC), from its planned 09:00 (14:00 UTC).
        moved = user_client.patch(
            url(google, master["id"]) + "?scope=this&original_start=2026-11-16T14:00:00Z",
            {"title": "Late standup", "start": "2026-11-16T11:00:00"},
            format="json",
        )
        assert moved.status_code == 200, moved.content
        return master, moved.json()

    def test_each_occurrence_keeps_nine_oclock_the_exdate_is_out_and_the_moved_one_is_moved(
        self, user_client, google, made
    ):
        master, moved = made
        got = expanded(user_client, google)
        rows = [(o["start"], o["start_local"], o["title"]) for o in got["results"]]
        assert rows == [
            ("2026-10-19T13:00:00Z", "2026-10-19T09:00:00-04:00", "Standup"),
            ("2026-10-26T13:00:00Z", "2026-10-26T09:00:00-04:00", "Standup"),
            ("2026-11-02T14:00:00Z", "2026-11-02T09:00:00-05:00", "Standup"),
            ("2026-11-16T16:00:00Z", "2026-11-16T11:00:00-05:00", "Late standup"),
            ("2026-11-23T14:00:00Z", "2026-11-23T09:00:00-05:00", "Standup"),
        ]
        assert got["count"] == 5
        first, late = got["results"][0], got["results"][3]
        assert first["end"] == "2026-10-19T13:30:00Z" and first["end_local"] == "2026-10-19T09:30:00-04:00"
        assert (first["event"], first["series"], first["recurring_event_id"]) == (
            master["id"],
            master["id"],
            master["event_id"],
        )
        assert first["original_start"] == "2026-10-19T13:00:00Z"
        assert (late["event"], late["series"], late["event_id"]) == (moved["id"], master["id"], moved["event_id"])
        assert late["original_start"] == "2026-11-16T14:00:00Z"

    def test_a_cancelled_occurrence_is_left_out(self, user_client, google, made):
        master, _ = made
        gone = user_client.delete(url(google, master["id"]) + "?scope=this&original_start=2026-11-23T14:00:00Z")
        assert gone.status_code == 204
        starts = [o["start"] for o in expanded(user_client, google)["results"]]
        assert "2026-11-23T14:00:00Z" not in starts and len(starts) == 4

    def test_the_window_cuts_the_series_and_takes_an_occurrence_moved_into_it(self, user_client, google, made):
        got = expanded(user_client, google, start="2026-11-16T15:00:00Z", end="2026-11-23T14:15:00Z")
        # The moved occurrence (16:00-16:30) and the one running at the window's end; not the planned 14:00.
        assert [o["start"] for o in got["results"]] == ["2026-11-16T16:00:00Z", "2026-11-23T14:00:00Z"]

    def test_it_is_paginated_like_the_list(self, user_client, google, made):
        got = expanded(user_client, google, page_size=2)
        assert got["count"] == 5 and len(got["results"]) == 2 and "page=2" in got["next"]

    def test_without_expand_the_list_holds_the_series_row(self, user_client, google, made):
        master, moved = made
        got = user_client.get(url(google), FALL).json()
        assert {e["id"] for e in got["results"]} == {master["id"], moved["id"]}


def test_an_occurrence_excluded_before_this_and_following_moved_the_series_stays_out(user_client, google):
    lines = ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;TZID=America/New_York:20261109T090000"]
    master = user_client.post(url(google), series(lines), format="json").json()
    split = user_client.patch(
        url(google, master["id"]) + "?scope=following&original_start=2026-11-02T14:00:00Z",
        {"start": "2026-11-02T10:30:00"},
        format="json",
    )
    assert split.status_code == 200, split.content
    assert split.json()["recurrence"][1] == "EXDATE;TZID=America/New_York:20261109T103000"
    got = expanded(user_client, google)["results"]
    assert [o["start_local"] for o in got] == [
        "2026-10-19T09:00:00-04:00",
        "2026-10-26T09:00:00-04:00",
        "2026-11-02T10:30:00-05:00",
        "2026-11-16T10:30:00-05:00",
        "2026-11-23T10:30:00-05:00",
    ]


def test_single_events_and_all_day_series_are_answered_too(user_client, google):
    single = {"title": "Dentist", "start": "2026-11-03T15:00:00Z", "end": "2026-11-03T16:00:00Z"}
    assert user_client.post(url(google), single, format="json").status_code == 201
    days = {
        "title": "Bins",
        "all_day": True,
        "start_date": "2026-10-30",
        "end_date": "2026-10-31",
        "time_zone": "America/New_York",
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
    }
    assert user_client.post(url(google), days, format="json").status_code == 201
    got = expanded(user_client, google)["results"]
    assert [(o["title"], o["start"], o["start_date"]) for o in got] == [
        ("Bins", None, "2026-10-30"),
        ("Dentist", "2026-11-03T15:00:00Z", None),
        ("Bins", None, "2026-11-06"),
        ("Bins", None, "2026-11-13"),
    ]
    assert got[0]["end_date"] == "2026-10-31" and got[2]["original_start"] == "2026-11-06"


def test_a_graph_series_is_expanded_once_with_its_synced_occurrence_rows(user_client, mscal_conn, mscal):
    cid = user_client.get(CALS).json()["results"][0]["id"]
    master = user_client.post(url(cid), series(["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4"]), format="json").json()
    calendar_sync(calendar_id=cid)  # Graph's calendar view stores every occurrence as a row of its own
    moved = user_client.patch(
        url(cid, master["id"]) + "?scope=this&original_start=2026-11-02T14:00:00Z",
        {"start": "2026-11-02T10:00:00"},
        format="json",
    )
    assert moved.status_code == 200, moved.content
    got = expanded(user_client, cid)["results"]
    assert [o["start_local"] for o in got] == [
        "2026-10-19T09:00:00-04:00",
        "2026-10-26T09:00:00-04:00",
        "2026-11-02T10:00:00-05:00",
        "2026-11-09T09:00:00-05:00",
    ]
    assert {o["series"] for o in got} == {master["id"]}


class TestAllDayEventsInAWindowGivenWithAnOffset:
    """An all-day event is its dates, in no zone: a window counts the days of the offset it is given in (what
    Google's events.list answers when asked with that zone as timeZone). Read in UTC instead, Tokyo's morning of
    the 10th (still the 9th in UTC) held the 9th and not the 10th."""

    @pytest.fixture
    def days(self, user_client, google):
        for title, day in (("Ninth", "2027-01-09"), ("Tenth", "2027-01-10"), ("Eleventh", "2027-01-11")):
            made = user_client.post(url(google), {"title": title, "all_day": True, "start_date": day}, format="json")
            assert made.status_code == 201, made.content

    @pytest.mark.parametrize("expand", ["true", "false"])
    @pytest.mark.parametrize(
        ("start", "end"),
        [
            ("2027-01-10T00:00:00+09:00", "2027-01-10T06:00:00+09:00"),  # Tokyo's morning: the 9th in UTC
            ("2027-01-10T00:00:00+09:00", "2027-01-11T00:00:00+09:00"),  # Tokyo's day: from 15:00 UTC on the 9th
            ("2027-01-10T18:00:00-05:00", "2027-01-11T00:00:00-05:00"),  # New York's evening: the 11th in UTC
            ("2027-01-10T00:00:00Z", "2027-01-11T00:00:00Z"),  # the end is exclusive: not the 11th
        ],
    )
    def test_a_window_within_the_tenth_holds_the_tenth_alone(self, user_client, google, days, expand, start, end):
        got = user_client.get(url(google), {"start": start, "end": end, "expand": expand})
        assert got.status_code == 200, got.content
        assert [e["title"] for e in got.json()["results"]] == ["Tenth"]

    def test_a_window_across_midnight_of_its_offset_holds_both_days(self, user_client, google, days):
        got = expanded(user_client, google, start="2027-01-10T23:00:00+09:00", end="2027-01-11T01:00:00+09:00")
        assert [e["title"] for e in got["results"]] == ["Tenth", "Eleventh"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"expand": "true"}, "start"),
        ({"expand": "true", "end": "2026-11-01T00:00:00Z"}, "end"),
        ({"expand": "true", "start": "2026-01-01T00:00:00Z", "end": "2027-01-03T00:00:00Z"}, "end"),
        ({"expand": "true", "start": "2026-11-01T00:00:00Z", "end": "2026-10-01T00:00:00Z"}, "end"),
        ({"expand": "perhaps", **FALL}, "expand"),
    ],
)
def test_a_window_that_is_missing_or_too_long_is_400_naming_the_field(user_client, google, params, field):
    response = user_client.get(url(google), params)
    assert response.status_code == 400, response.content
    body = response.json()
    assert body.get("field") == field or field in body.get("fields", {}), body
    assert field in body["detail"]


def test_another_users_calendar_is_404(client_for, google):
    assert client_for(UserFactory()).get(url(google), {"expand": "true", **FALL}).status_code == 404
