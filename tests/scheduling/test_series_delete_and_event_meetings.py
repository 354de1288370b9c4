"""Meetings attached to one occurrence of a series, and meetings that are their own event."""

import datetime as dt

import pytest

from scheduling.calendars.sync import calendar_sync
from scheduling.models import Calendar, CalendarEvent, Meeting, MeetingSubscription
from scheduling.signals import calendar_event_changed

from . import test_meet_lifecycle as meet_lifecycle
from . import test_teams_lifecycle as teams_lifecycle
from .helpers import URL, body

pytestmark = pytest.mark.django_db
# The lifecycle suites' fixtures, reused as they are.
inline, meeting, meet_requests = meet_lifecycle.inline, meet_lifecycle.meeting, meet_lifecycle.meet_requests
hub, granted, create, committed = (
    teams_lifecycle.hub,
    teams_lifecycle.granted,
    teams_lifecycle.create,
    teams_lifecycle.committed,
)
CALS = "/api/v1/calendars/"


@pytest.fixture
def cal(user_client, mscal_conn, mscal):
    listed = user_client.get(CALS).json()["results"]
    return Calendar.objects.get(pk=listed[0]["id"])


def weekly(mscal, first):
    start = dt.datetime.combine(first, dt.time(9, 0))
    return mscal.add(
        type="seriesMaster",
        subject="Weekly",
        start={"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
        end={"dateTime": (start + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
        originalStartTimeZone="UTC",
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [first.strftime("%A").lower()]},
            "range": {"type": "noEnd", "startDate": first.isoformat(), "recurrenceTimeZone": "UTC"},
        },
    )


def zoom_on_occurrence(user_client, mscal_conn, occurrence):
    ref = {"connection": mscal_conn.pk, "event_id": occurrence.external_id}
    response = user_client.post(URL, body("zoom", calendar_event=ref), format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.parametrize("scope", ["all", "following"])
def test_deleting_a_series_cancels_the_zoom_meeting_of_one_of_its_occurrences(
    user_client, cal, mscal, mscal_conn, zoom, scope
):
    first = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).date()
    eid = weekly(mscal, first)
    calendar_sync(calendar_id=cal.pk)
    master = CalendarEvent.objects.get(external_id=eid)
    occurrences = CalendarEvent.objects.filter(recurring_event_id=eid).order_by("original_start")
    third = occurrences[2]
    meeting = zoom_on_occurrence(user_client, mscal_conn, third)
    assert meeting["meeting_id"] in zoom.meetings

    url = f"{CALS}{cal.pk}/events/{master.pk}/?scope={scope}"
    if scope == "following":
        url += "&original_start=" + occurrences[1].original_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    response = user_client.delete(url)
    assert response.status_code in (200, 204), response.content

    third.refresh_from_db()
    assert third.status == "cancelled"
    assert Meeting.objects.get(pk=meeting["id"]).status == "cancelled"
    assert meeting["meeting_id"] not in zoom.meetings


# --- A Teams or Meet meeting is its calendar event: cancelling the event ends its subscriptions too ----------


def test_a_teams_meeting_cancelled_through_its_calendar_event_deletes_its_subscriptions(
    hub, granted, graph, create, committed
):
    meeting = create()
    assert len(graph.subscriptions) == 2
    with committed():
        calendar_event_changed.send(
            sender=None, connection_id=meeting.connection_id, event_id=meeting.external_id, cancelled=True
        )
    assert Meeting.objects.get(pk=meeting.pk).status == "cancelled"
    assert graph.subscriptions == {}
    assert set(MeetingSubscription.objects.values_list("status", flat=True)) == {"ended"}


def test_a_meet_meeting_cancelled_through_its_calendar_event_deletes_its_subscription(meeting, gmeet, inline):
    inline(
        calendar_event_changed.send,
        sender=None,
        connection_id=meeting.connection_id,
        event_id=meeting.external_id,
        cancelled=True,
    )
    assert Meeting.objects.get(pk=meeting.pk).status == "cancelled"
    assert ("DELETE", "/v1/subscriptions/sub-1") in meet_requests(gmeet)
    assert MeetingSubscription.objects.get().status == "ended" and not gmeet.subscriptions
