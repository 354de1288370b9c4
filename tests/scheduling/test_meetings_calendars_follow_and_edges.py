"""A meeting's calendar event follows it; default hours keep their zone; all-day moves keep length; half-made meetings undone; Graph windows renewed; dropped calendars unwatched."""

import datetime as dt
import json
import time

import httpx
import pytest
import time_machine
from django.utils import timezone

from integrations.models import Connection
from scheduling.calendars.sync import calendar_sync
from scheduling.models import Calendar, CalendarEvent, Meeting
from scheduling.tasks import calendar_watch_renew_due

from . import test_availability_api as availability_tests
from .helpers import URL, body

pytestmark = pytest.mark.django_db
CALS = "/api/v1/calendars/"
AVAILABILITY = "/api/v1/scheduling/availability/"
# Fixtures of the availability tests: the free/busy fake, and Ada (Berlin) and Bo (New York) in one group.
fb, team = availability_tests.fb, availability_tests.team


@pytest.fixture
def ms_calendar(user_client, mscal_conn, mscal):
    listed = user_client.get(CALS).json()["results"]
    return Calendar.objects.get(pk=listed[0]["id"])


@pytest.fixture
def g_calendar(user_client, gcal_conn, gcal):
    listed = user_client.get(CALS).json()["results"]
    return Calendar.objects.get(pk=next(c["id"] for c in listed if c["name"] == "Ada"))


def _zoom_on_event(user_client, calendar, conn):
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).replace(microsecond=0, second=0, minute=0)
    event = {"title": "Review", "start": start.isoformat(), "end": (start + dt.timedelta(minutes=45)).isoformat()}
    made = user_client.post(f"{CALS}{calendar.pk}/events/", event, format="json")
    assert made.status_code == 201, made.content
    row = CalendarEvent.objects.get(pk=made.json()["id"])
    ref = {"connection": conn.pk, "event_id": row.external_id}
    meeting = user_client.post(
        URL, body("zoom", calendar_event=ref, start_time=start.isoformat(), duration_minutes=45), format="json"
    ).json()
    assert meeting["calendar_event"] == ref
    return row, meeting, start


def test_moving_a_zoom_meeting_moves_the_calendar_event_it_is_attached_to(
    user_client, zoom, gcal, gcal_conn, g_calendar
):
    """Issue 19 point 6: "moving or cancelling either updates the other". Only event -> meeting exists
    (scheduling.consistency); PATCH /api/v1/scheduling/meetings/{id}/ moves the Zoom meeting and leaves the
    user's calendar event at the old time, so the calendar (and every attendee's) shows the wrong time."""
    row, meeting, start = _zoom_on_event(user_client, g_calendar, gcal_conn)
    later = start + dt.timedelta(days=1, hours=2)
    response = user_client.patch(f"{URL}{meeting['id']}/", {"start_time": later.isoformat()}, format="json")
    assert response.status_code == 200, response.content
    assert zoom.meetings[meeting["meeting_id"]]["start_time"] == later.strftime("%Y-%m-%dT%H:%M:%SZ")

    at_google = gcal.events[g_calendar.external_id][row.external_id]
    assert dt.datetime.fromisoformat(at_google["start"]["dateTime"]) == later


def test_cancelling_a_zoom_meeting_does_not_leave_its_calendar_event_behind(
    user_client, zoom, gcal, gcal_conn, g_calendar
):
    """DELETE /api/v1/scheduling/meetings/{id}/ cancels the Zoom meeting; the calendar event it was attached to
    (the invitation holding its join link) is left in the calendar, pointing at a meeting that no longer exists."""
    row, meeting, _ = _zoom_on_event(user_client, g_calendar, gcal_conn)
    assert user_client.delete(f"{URL}{meeting['id']}/").status_code == 200
    assert Meeting.objects.get(pk=meeting["id"]).status == "cancelled"
    assert gcal.events[g_calendar.external_id][row.external_id]["status"] == "cancelled"


# --- Availability: the request's default working hours ----------------------------------------------------


@pytest.mark.redis
def test_the_default_working_hours_time_zone_of_the_request_is_used(fb, team, client_for):
    """`working_hours` at the top of the request is a WorkingHours object with `time_zone` (the serializer
    accepts and validates it), but availability_find builds the default from the separate top-level `time_zone`
    only, so {"working_hours": {"time_zone": "America/New_York"}} silently means 09:00-17:00 UTC: with
    policy=required the answer offers 09:00 UTC (04:00 in New York) and nothing after 17:00 UTC."""
    ada, _ = team
    response = client_for(ada).post(
        AVAILABILITY,
        {
            "users": [{"id": ada.pk}],
            "duration_minutes": 60,
            "granularity_minutes": 60,
            "working_hours": {"time_zone": "America/New_York", "start": "09:00", "end": "17:00"},
            "working_hours_policy": "required",
            **availability_tests.MONDAY,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["users"][0]["working_hours"]["time_zone"] == "America/New_York"
    # 09:00-17:00 in New York on Monday 7 December 2026 is 14:00-22:00 UTC.
    assert [s["start"] for s in answer["slots"]][:3] == [
        "2026-12-07T14:00:00Z",
        "2026-12-07T15:00:00Z",
        "2026-12-07T16:00:00Z",
    ]
    assert len(answer["slots"]) == 8


def test_moving_a_multi_day_all_day_event_keeps_its_length(user_client, gcal, gcal_conn, g_calendar):
    """PATCH {"start_date": ...} on a timed event keeps its duration (event_write completes `end` from the stored
    event), but on an all-day event the stored end_date is dropped and the event becomes one day long: moving
    a three-day offsite by a week silently cuts it to its first day, at Google and for every attendee."""
    offsite = {"title": "Offsite", "all_day": True, "start_date": "2026-03-09", "end_date": "2026-03-12"}
    made = user_client.post(f"{CALS}{g_calendar.pk}/events/", offsite, format="json")
    assert made.status_code == 201, made.content
    response = user_client.patch(
        f"{CALS}{g_calendar.pk}/events/{made.json()['id']}/", {"start_date": "2026-03-16"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["start_date"], response.json()["end_date"]) == ("2026-03-16", "2026-03-19")


# --- Meetings: a failure after the provider made the meeting ----------------------------------------------


def test_a_registrant_failure_does_not_leave_a_meeting_that_a_retry_duplicates(
    user_client, zoom, monkeypatch, calendars_eager, django_capture_on_commit_callbacks
):
    """meeting_create makes the Zoom meeting and commits its row, then adds the registrants. When Zoom refuses a
    registrant (its 429 here), the client gets an error although the meeting exists at Zoom and in the hub; the
    idempotency record is dropped with the error, so the client's retry with the same Idempotency-Key makes a
    second Zoom meeting (and a second row): participants end up with two meetings."""
    from scheduling.providers import zoom as zoom_provider

    original = zoom_provider.registrant_add
    calls = []

    def refused_once(**kwargs):
        if not calls:
            zoom.fail_next.append((429, {"code": 429, "message": "Too many requests."}, {"Retry-After": "1"}))
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(zoom_provider, "registrant_add", refused_once)
    people = [{"email": "ana@example.com", "name": "Ana Lima"}, {"email": "bo@example.com"}]
    request = body("zoom", participants=people, settings={"registration": True})
    with django_capture_on_commit_callbacks() as queued:
        first = user_client.post(URL, request, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    assert first.status_code >= 400, first.content
    time.sleep(float(first.headers.get("Retry-After", "1")) + 0.2)  # the client honours Retry-After
    for background in queued:  # whatever the failed request left to the workers runs meanwhile
        background()
    again = user_client.post(URL, request, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    assert again.status_code == 201, again.content
    assert len(zoom.meetings) == 1
    assert Meeting.objects.exclude(status="cancelled").count() == 1


# --- Graph delta: the calendar view's window -------------------------------------------------------------


def _window_kept_by_the_delta(mscal):
    """Graph's calendarView delta keeps the startDateTime/endDateTime of the request that began it: every delta
    link after it reports changes inside that window only (learn.microsoft.com/graph/delta-query-events). The
    shared fake ignores the window after the first request; this makes it keep it, as Graph does."""
    original, windows = mscal._delta, {}

    def parse(text):
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    def delta(calendar, params):
        token = params.get("$deltatoken")
        response = original(calendar, params)
        answer = json.loads(response.content)
        if response.status_code != 200:
            return response
        if token is None:
            window = parse(params["startDateTime"]), parse(params["endDateTime"])
        else:
            window = windows[token]
            answer["value"] = [
                v for v in answer["value"] if "@removed" in v or window[0] <= mscal._start(v) < window[1]
            ]
        windows[answer["@odata.deltaLink"].rsplit("=", 1)[1]] = window
        return httpx.Response(200, json=answer)

    mscal._delta = delta


def test_an_outlook_calendar_keeps_syncing_events_after_its_first_windows_end(
    settings, user_client, mscal, mscal_conn, ms_calendar
):
    """The first Graph sync reads [now - 30 d, now + CALENDAR_GRAPH_WINDOW_DAYS_AHEAD] and from then on only
    follows its delta link, which never leaves that window; nothing ever starts a new one (only a 410 does). Once
    time has moved on, a new event beyond the first window's end is never synced: with the default 365 days, a
    year after a calendar was connected no new event reaches the hub at all (no row, no meeting follows it)."""
    settings.CALENDAR_GRAPH_WINDOW_DAYS_AHEAD = 30
    _window_kept_by_the_delta(mscal)
    calendar_sync(calendar_id=ms_calendar.pk)  # the first sync: a window up to 30 days ahead of today

    with time_machine.travel(timezone.now() + dt.timedelta(days=45)):
        Connection.objects.filter(pk=mscal_conn.pk).update(expires_at=timezone.now() + dt.timedelta(hours=1))
        start = (timezone.now() + dt.timedelta(days=7)).replace(microsecond=0)
        eid = mscal.add(
            subject="Next week",
            start={"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
            end={"dateTime": (start + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
        )
        calendar_watch_renew_due()  # the hourly beat
        calendar_sync(calendar_id=ms_calendar.pk)  # what its push notification runs

    assert CalendarEvent.objects.filter(calendar=ms_calendar, external_id=eid).exists()


# --- Calendars that leave the provider's list ----------------------------------------------------------------


def test_a_calendar_that_left_the_list_closes_its_push_channel(user_client, gcal, gcal_conn, settings):
    """calendars_refresh deletes the row of a calendar Google no longer lists (the user deleted or unsubscribed
    it) without closing its events.watch channel (calendar_unwatch is only run on disconnect): Google keeps
    posting to the hub, which answers 403 unknown_channel, until the channel lapses (up to
    CALENDAR_WATCH_TTL_SECONDS, a week by default)."""
    from scheduling.calendars.services import calendar_list
    from scheduling.calendars.sync import calendar_watch

    shared = Calendar.objects.get(
        pk=next(c["id"] for c in user_client.get(CALS).json()["results"] if c["name"] == "Team")
    )
    channel = calendar_watch(calendar_id=shared.pk).channel_id
    assert channel in gcal.channels
    del gcal.calendars["team@group.calendar.google.com"]
    list(calendar_list(owner=gcal_conn.owner, refresh=True))
    assert not Calendar.objects.filter(pk=shared.pk).exists()
    assert channel not in gcal.channels
