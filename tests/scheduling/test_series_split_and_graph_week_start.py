"""Fortnightly series with a Sunday keep their weeks across Outlook (firstDayOfWeek vs WKST); a split ends the old tail.

Graph counts the weeks of an every-n-weeks series from the pattern's firstDayOfWeek (sunday unless named), RFC
5545 from WKST (Monday unless named): "every other week on Wednesday and Sunday" from Wednesday March 4, 2026 is
March 4, 15, 18, 29... in Outlook's Sunday weeks and March 4, 8, 18, 22... in Monday weeks. Read from Outlook or
written to it, a series must keep the days it had.

"This and following" ends the old series before the occurrence and starts a new one there: the old series'
rows from that occurrence on (its moved or edited occurrences, and on Microsoft calendars every synced
occurrence) go with the old tail, or they show beside the new series' own occurrences.
"""

import datetime as dt

import pytest

from scheduling.calendars.sync import calendar_sync
from scheduling.models import Calendar

pytestmark = pytest.mark.django_db
CALS = "/api/v1/calendars/"
SPRING = {"start": "2026-03-01T00:00:00Z", "end": "2026-05-01T00:00:00Z"}
FALL = {"start": "2026-10-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}


def url(cid, event=None):
    return f"{CALS}{cid}/events/" + (f"{event}/" if event else "")


def expanded(client, cid, window):
    response = client.get(url(cid), {"expand": "true", **window})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def first_calendar(client):
    return client.get(CALS).json()["results"][0]["id"]


@pytest.fixture
def outlook(user_client, mscal_conn, mscal):
    return first_calendar(user_client)


@pytest.fixture
def google(user_client, gcal_conn, gcal):
    listed = user_client.get(CALS).json()["results"]
    return next(c["id"] for c in listed if Calendar.objects.get(pk=c["id"]).external_id == "ada@example.com")


# --- Every other week on Wednesday and Sunday -----------------------------------------------------------


def test_a_fortnightly_outlook_series_with_a_sunday_expands_on_outlooks_own_days(user_client, outlook, mscal):
    mscal.add(
        type="seriesMaster",
        subject="Fortnightly",
        start={"dateTime": "2026-03-04T09:00:00.0000000", "timeZone": "W. Europe Standard Time"},
        end={"dateTime": "2026-03-04T09:30:00.0000000", "timeZone": "W. Europe Standard Time"},
        originalStartTimeZone="W. Europe Standard Time",
        recurrence={
            "pattern": {
                "type": "weekly",
                "interval": 2,
                "daysOfWeek": ["sunday", "wednesday"],
                "firstDayOfWeek": "sunday",
            },
            "range": {
                "type": "numbered",
                "numberOfOccurrences": 6,
                "startDate": "2026-03-04",
                "recurrenceTimeZone": "W. Europe Standard Time",
            },
        },
    )
    calendar_sync(calendar_id=Calendar.objects.get(pk=outlook).pk)
    got = expanded(user_client, outlook, SPRING)
    # Sunday weeks: Mar 1-7 (the 4th), Mar 15-21, Mar 29-Apr 4, Apr 12-18. Berlin's clocks change on March 29.
    assert [o["start_local"] for o in got] == [
        "2026-03-04T09:00:00+01:00",
        "2026-03-15T09:00:00+01:00",
        "2026-03-18T09:00:00+01:00",
        "2026-03-29T09:00:00+02:00",
        "2026-04-01T09:00:00+02:00",
        "2026-04-12T09:00:00+02:00",
    ]


def test_a_fortnightly_rule_with_a_sunday_written_to_outlook_keeps_its_monday_weeks(user_client, outlook, mscal):
    body = {
        "title": "Fortnightly",
        "start": "2026-03-04T09:00:00",
        "end": "2026-03-04T09:30:00",
        "time_zone": "Europe/Berlin",
        "recurrence": ["RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=WE,SU;COUNT=6"],
    }
    made = user_client.post(url(outlook), body, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["recurrence"] == ["RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=WE,SU;COUNT=6"]
    # What Outlook now holds (its occurrences, read back by a sync) is what the rule says.
    calendar_sync(calendar_id=Calendar.objects.get(pk=outlook).pk)
    got = expanded(user_client, outlook, SPRING)
    # Monday weeks (RFC 5545's default WKST): Mar 2-8, Mar 16-22, Mar 30-Apr 5.
    assert [o["start_local"] for o in got] == [
        "2026-03-04T09:00:00+01:00",
        "2026-03-08T09:00:00+01:00",
        "2026-03-18T09:00:00+01:00",
        "2026-03-22T09:00:00+01:00",
        "2026-04-01T09:00:00+02:00",
        "2026-04-05T09:00:00+02:00",
    ]
    assert all(o["event_id"].startswith(f"{made.json()['event_id']}-occ-") for o in got)


# --- This and following ---------------------------------------------------------------------------------


def test_splitting_a_google_series_ends_its_later_exceptions_and_keeps_the_earlier_ones(user_client, google, gcal):
    body = {
        "title": "Standup",
        "start": "2026-10-19T09:00:00",
        "end": "2026-10-19T09:30:00",
        "time_zone": "America/New_York",
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6"],  # Oct 19, 26, Nov 2, 9, 16, 23
    }
    master = user_client.post(url(google), body, format="json").json()

    def moved(original_start, title, start):
        response = user_client.patch(
            url(google, master["id"]) + f"?scope=this&original_start={original_start}",
            {"title": title, "start": start},
            format="json",
        )
        assert response.status_code == 200, response.content
        return response.json()

    early = moved("2026-10-26T13:00:00Z", "Early standup", "2026-10-26T08:00:00")
    late = moved("2026-11-16T14:00:00Z", "Late standup", "2026-11-16T11:00:00")

    split = user_client.patch(
        url(google, master["id"]) + "?scope=following&original_start=2026-11-02T14:00:00Z",
        {"title": "New standup"},
        format="json",
    )
    assert split.status_code == 200, split.content

    got = [(o["start_local"], o["title"]) for o in expanded(user_client, google, FALL)]
    assert got == [
        ("2026-10-19T09:00:00-04:00", "Standup"),
        ("2026-10-26T08:00:00-04:00", "Early standup"),
        ("2026-11-02T09:00:00-05:00", "New standup"),
        ("2026-11-09T09:00:00-05:00", "New standup"),
        ("2026-11-16T09:00:00-05:00", "New standup"),
        ("2026-11-23T09:00:00-05:00", "New standup"),
    ]
    assert user_client.get(url(google, late["id"])).json()["status"] == "cancelled"
    assert user_client.get(url(google, early["id"])).json()["status"] == "confirmed"
    # Google keeps an exception as an event of its own when its series is shortened: it was deleted there too.
    at_google = gcal.events["ada@example.com"]
    assert at_google[late["event_id"]]["status"] == "cancelled"
    assert at_google[early["event_id"]]["status"] == "confirmed"


def test_splitting_a_synced_outlook_series_leaves_none_of_its_later_occurrences_behind(user_client, outlook, mscal):
    first = dt.datetime(2026, 3, 2, 9, 0)
    mscal.add(
        type="seriesMaster",
        subject="Weekly",
        start={"dateTime": first.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
        end={"dateTime": "2026-03-02T09:30:00.0000000", "timeZone": "UTC"},
        originalStartTimeZone="UTC",
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "firstDayOfWeek": "sunday"},
            "range": {
                "type": "numbered",
                "numberOfOccurrences": 6,
                "startDate": "2026-03-02",
                "recurrenceTimeZone": "UTC",
            },
        },
    )
    cal = Calendar.objects.get(pk=outlook)
    calendar_sync(calendar_id=cal.pk)
    master = next(e for e in user_client.get(url(outlook)).json()["results"] if e["recurrence"])

    split = user_client.patch(
        url(outlook, master["id"]) + "?scope=following&original_start=2026-03-16T09:00:00Z",
        {"title": "Later"},
        format="json",
    )
    assert split.status_code == 200, split.content
    want = [
        ("2026-03-02T09:00:00+00:00", "Weekly"),
        ("2026-03-09T09:00:00+00:00", "Weekly"),
        ("2026-03-16T09:00:00+00:00", "Later"),
        ("2026-03-23T09:00:00+00:00", "Later"),
        ("2026-03-30T09:00:00+00:00", "Later"),
        ("2026-04-06T09:00:00+00:00", "Later"),
    ]
    assert [(o["start_local"], o["title"]) for o in expanded(user_client, outlook, SPRING)] == want
    # And once the new series' occurrences are synced in, still each occurrence once.
    calendar_sync(calendar_id=cal.pk)
    assert [(o["start_local"], o["title"]) for o in expanded(user_client, outlook, SPRING)] == want
