"""EXDATE on Microsoft calendars: a series' deleted occurrences read back as EXDATE lines, and written as deletions."""

import datetime as dt

import pytest

from scheduling.calendars import recurrence
from scheduling.calendars.sync import calendar_sync
from scheduling.models import Calendar, CalendarEvent

pytestmark = pytest.mark.django_db
CALS = "/api/v1/calendars/"


@pytest.fixture
def cal(user_client, mscal_conn, mscal):
    listed = user_client.get(CALS).json()["results"]
    return Calendar.objects.get(pk=listed[0]["id"])


def url(cal, event=None):
    return f"{CALS}{cal.pk}/events/" + (f"{event}/" if event else "")


def weekly(mscal, *, first, zone, time="09:00:00", length=dt.timedelta(minutes=30), all_day=False):
    """A weekly series made in Outlook, on the weekday of `first` (a local date) at `time` in the Windows `zone`."""
    start = dt.datetime.fromisoformat(f"{first}T{time}")
    end = start + (dt.timedelta(days=1) if all_day else length)
    return mscal.add(
        type="seriesMaster",
        subject="Weekly",
        isAllDay=all_day,
        start={"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": zone},
        end={"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": zone},
        originalStartTimeZone=zone,
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [first.strftime("%A").lower()]},
            "range": {"type": "noEnd", "startDate": first.isoformat(), "recurrenceTimeZone": zone},
        },
    )


def gets_of(mscal, eid):
    return [r for r in mscal.requests if r.method == "GET" and r.url.path == f"/v1.0/me/events/{eid}"]


def test_an_occurrence_deleted_in_outlook_comes_back_as_an_exdate_at_its_wall_clock_across_dst(cal, mscal):
    # Mondays 09:00 in New York from October 19, 2026; the clocks go back on November 1 (EDT -> EST).
    eid = weekly(mscal, first=dt.date(2026, 10, 19), zone="Eastern Standard Time")
    calendar_sync(calendar_id=cal.pk)
    master = CalendarEvent.objects.get(external_id=eid)
    assert master.recurrence == ["RRULE:FREQ=WEEKLY;BYDAY=MO"] and master.time_zone == "America/New_York"

    mscal.cancel_occurrence(eid, dt.date(2026, 11, 2))
    calendar_sync(calendar_id=cal.pk)

    master.refresh_from_db()
    assert master.recurrence == ["RRULE:FREQ=WEEKLY;BYDAY=MO", "EXDATE;TZID=America/New_York:20261102T090000"]
    assert CalendarEvent.objects.get(external_id=f"{eid}-occ-20261102").status == "cancelled"
    # The master was read with cancelledOccurrences named in $select (Graph answers it only then).
    assert "cancelledOccurrences" in gets_of(mscal, eid)[-1].url.params["$select"].split(",")
    # 09:00 EST is 14:00 UTC: the EXDATE removes that occurrence, not the EDT hour (13:00 UTC) before it.
    starts = recurrence.occurrences(
        master.recurrence,
        start=master.start,
        tz_name=master.time_zone,
        all_day=False,
        window_start=dt.datetime(2026, 10, 26, tzinfo=dt.UTC),
        window_end=dt.datetime(2026, 11, 10, tzinfo=dt.UTC),
    )
    assert starts == [dt.datetime(2026, 10, 26, 13, 0, tzinfo=dt.UTC), dt.datetime(2026, 11, 9, 14, 0, tzinfo=dt.UTC)]


def test_an_all_day_series_gets_the_dates_of_its_deleted_occurrences(cal, mscal):
    eid = weekly(mscal, first=dt.date(2026, 3, 6), zone="Tokyo Standard Time", time="00:00:00", all_day=True)
    mscal.cancel_occurrence(eid, dt.date(2026, 3, 20))
    mscal.cancel_occurrence(eid, dt.date(2026, 3, 13))
    calendar_sync(calendar_id=cal.pk)
    master = CalendarEvent.objects.get(external_id=eid)
    assert master.all_day and master.start_date == dt.date(2026, 3, 6)
    assert master.recurrence == ["RRULE:FREQ=WEEKLY;BYDAY=FR", "EXDATE;VALUE=DATE:20260313,20260320"]


def test_a_series_deleted_in_outlook_is_cancelled_with_its_occurrences(cal, mscal):
    eid = weekly(mscal, first=dt.date(2026, 5, 4), zone="W. Europe Standard Time")
    calendar_sync(calendar_id=cal.pk)
    assert CalendarEvent.objects.filter(recurring_event_id=eid).exists()
    mscal.remove(eid)  # the calendar view's delta reports the occurrences removed, never the master
    calendar_sync(calendar_id=cal.pk)
    assert CalendarEvent.objects.get(external_id=eid).status == "cancelled"
    assert set(CalendarEvent.objects.filter(recurring_event_id=eid).values_list("status", flat=True)) == {"cancelled"}


def standup(lines):
    """Mondays 09:00-09:15 in Berlin from March 2, 2026 (summer time starts there on March 29)."""
    return {
        "title": "Standup",
        "start": "2026-03-02T09:00:00",
        "end": "2026-03-02T09:15:00",
        "time_zone": "Europe/Berlin",
        "recurrence": lines,
    }


def test_an_exdate_added_by_a_patch_deletes_that_occurrence_at_graph_and_reads_back(user_client, cal, mscal):
    made = user_client.post(url(cal), standup(["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6"]), format="json").json()
    lines = ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;TZID=Europe/Berlin:20260330T090000"]
    response = user_client.patch(url(cal, made["id"]), {"recurrence": lines}, format="json")
    assert response.status_code == 200, response.content
    # March 30 is after the change to summer time: 09:00 there is 07:00 UTC, the occurrence Graph deletes.
    deleted = [r.url.path for r in mscal.requests if r.method == "DELETE"]
    assert deleted == [f"/v1.0/me/events/{made['event_id']}-occ-20260330"]
    assert response.json()["recurrence"] == lines
    assert CalendarEvent.objects.get(pk=made["id"]).recurrence == lines


def test_a_patch_that_leaves_the_recurrence_alone_keeps_the_series_exdates(user_client, cal, mscal):
    lines = ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;TZID=Europe/Berlin:20260309T090000"]
    made = user_client.post(url(cal), standup(lines), format="json").json()
    response = user_client.patch(url(cal, made["id"]), {"title": "Daily standup"}, format="json")
    assert response.status_code == 200, response.content
    # Graph's PATCH answer carries no cancelledOccurrences; the series is read back so the EXDATE stays.
    assert response.json()["recurrence"] == lines and response.json()["title"] == "Daily standup"


@pytest.mark.parametrize(
    ("lines", "part"),
    [
        # A Tuesday: no occurrence of a Monday series.
        (["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;TZID=Europe/Berlin:20260317T090000"], "EXDATE 2026-03-17T09:00:00"),
        # The right day at the wrong hour (08:00 UTC on March 30 is 10:00 in Berlin, after summer time starts).
        (["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE:20260330T080000Z"], "EXDATE 2026-03-30T10:00:00"),
        # After the series' last occurrence (April 6).
        (["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;TZID=Europe/Berlin:20260413T090000"], "EXDATE 2026-04-13T09:00:00"),
        # A date for a timed series.
        (["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;VALUE=DATE:20260309"], "EXDATE 2026-03-09"),
    ],
)  # fmt: skip
def test_an_exdate_that_names_no_occurrence_is_400_naming_it_and_sends_nothing(user_client, cal, mscal, lines, part):
    before = len(mscal.requests)
    response = user_client.post(url(cal), standup(lines), format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_recurrence" and response.json()["part"] == part
    assert part in response.json()["detail"] and len(mscal.requests) == before


def test_a_patch_exdate_that_names_no_occurrence_is_400_and_changes_nothing(user_client, cal, mscal):
    made = user_client.post(url(cal), standup(["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6"]), format="json").json()
    lines = ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;TZID=Europe/Berlin:20260310T090000"]
    response = user_client.patch(url(cal, made["id"]), {"recurrence": lines}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["part"] == "EXDATE 2026-03-10T09:00:00"
    assert not [r for r in mscal.requests if r.method in ("PATCH", "DELETE")]
    assert CalendarEvent.objects.get(pk=made["id"]).recurrence == ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6"]


def test_this_and_following_at_another_time_moves_the_later_exdates_with_the_series(user_client, cal, mscal):
    lines = ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6", "EXDATE;TZID=Europe/Berlin:20260330T090000"]
    made = user_client.post(url(cal), standup(lines), format="json").json()
    response = user_client.patch(
        url(cal, made["id"]) + "?scope=following&original_start=2026-03-16T08:00:00Z",
        {"start": "2026-03-16T10:00:00"},
        format="json",
    )
    assert response.status_code == 200, response.content
    new = response.json()
    # March 30 stays out of the new 10:00 series: its occurrence there is deleted at Graph and reads back.
    assert new["recurrence"] == ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4", "EXDATE;TZID=Europe/Berlin:20260330T100000"]
    assert f"{new['event_id']}-occ-20260330" in mscal.deleted_occurrences
    assert mscal.events[made["event_id"]]["recurrence"]["range"]["numberOfOccurrences"] == 2
