"""Microsoft calendars over Graph: Windows zones, patternedRecurrence, delta sync and subscriptions."""

import datetime as dt
import json

import pytest

from integrations.models import WebhookEvent
from integrations.webhooks.tasks import webhook_process
from scheduling.calendars.sync import calendar_sync, calendar_watch
from scheduling.models import Calendar, CalendarEvent

from ..factories import UserFactory
from .conftest import _connection

pytestmark = pytest.mark.django_db
CALS = "/api/v1/calendars/"


@pytest.fixture
def cal(user_client, mscal_conn, mscal):
    listed = user_client.get(CALS).json()["results"]
    assert [c["name"] for c in listed] == ["Calendar"]
    return Calendar.objects.get(pk=listed[0]["id"])


def url(cal, event=None):
    return f"{CALS}{cal.pk}/events/" + (f"{event}/" if event else "")


def standup(lines):
    """A 15-minute Monday 09:00 series in Berlin from March 2, 2026 (DST starts there on March 29)."""
    return {
        "title": "Standup",
        "start": "2026-03-02T09:00:00",
        "end": "2026-03-02T09:15:00",
        "time_zone": "Europe/Berlin",
        "recurrence": lines,
    }


def sent(mscal, method):
    request = [r for r in mscal.requests if r.method == method][-1]
    return json.loads(request.content) if request.content else {}


def test_the_calendar_takes_the_mailboxs_zone_mapped_from_windows(cal):
    assert cal.kind == "microsoft" and cal.primary and cal.time_zone == "America/Los_Angeles"
    assert cal.access_role == "owner"


def test_create_sends_wall_clock_time_with_the_windows_zone(user_client, cal, mscal):
    body = {
        "title": "Planning",
        "start": "2026-02-23T09:00:00",
        "end": "2026-02-23T10:00:00",
        "time_zone": "America/New_York",
        "attendees": [{"email": "bo@contoso.com", "optional": True}],
        "reminders": {"use_default": False, "overrides": [{"method": "popup", "minutes": 5}]},
        "visibility": "private",
    }
    response = user_client.post(url(cal), body, format="json")
    assert response.status_code == 201, response.content
    posted = sent(mscal, "POST")
    assert posted["start"] == {"dateTime": "2026-02-23T09:00:00", "timeZone": "Eastern Standard Time"}
    assert posted["isAllDay"] is False and posted["sensitivity"] == "private"
    assert posted["attendees"] == [{"emailAddress": {"address": "bo@contoso.com", "name": ""}, "type": "optional"}]
    assert (posted["isReminderOn"], posted["reminderMinutesBeforeStart"]) == (True, 5)
    event = response.json()
    assert event["start"] == "2026-02-23T14:00:00Z" and event["time_zone"] == "America/New_York"
    assert event["start_local"] == "2026-02-23T09:00:00-05:00" and event["visibility"] == "private"


def test_a_graph_event_in_pacific_standard_time_is_stored_as_utc_and_los_angeles(cal, mscal):
    # March 10, 2026 is after the US change to daylight time (March 8): 09:00 there is 16:00 UTC.
    mscal.add(
        subject="Design review",
        start={"dateTime": "2026-03-10T09:00:00.0000000", "timeZone": "Pacific Standard Time"},
        end={"dateTime": "2026-03-10T10:30:00.0000000", "timeZone": "Pacific Standard Time"},
        originalStartTimeZone="Pacific Standard Time",
        attendees=[
            {"type": "required", "status": {"response": "accepted"}, "emailAddress": {"address": "a@contoso.com"}},
            {"type": "optional", "status": {"response": "tentativelyAccepted"}, "emailAddress": {"address": "b@x.com"}},
        ],
    )
    calendar_sync(calendar_id=cal.pk)
    row = CalendarEvent.objects.get()
    assert row.start == dt.datetime(2026, 3, 10, 16, 0, tzinfo=dt.UTC)
    assert row.end == dt.datetime(2026, 3, 10, 17, 30, tzinfo=dt.UTC)
    assert row.time_zone == "America/Los_Angeles"
    assert [a["response_status"] for a in row.attendees] == ["accepted", "tentative"]
    assert row.attendees[1]["optional"] is True


def test_an_all_day_graph_event_keeps_its_dates_whatever_the_zone(cal, mscal):
    mscal.add(
        subject="Holiday",
        isAllDay=True,
        start={"dateTime": "2026-03-08T00:00:00.0000000", "timeZone": "Tokyo Standard Time"},
        end={"dateTime": "2026-03-09T00:00:00.0000000", "timeZone": "Tokyo Standard Time"},
    )
    calendar_sync(calendar_id=cal.pk)
    row = CalendarEvent.objects.get()
    assert row.all_day and (row.start_date, row.end_date) == (dt.date(2026, 3, 8), dt.date(2026, 3, 9))
    assert row.start is None


def test_an_rrule_becomes_a_patterned_recurrence_and_comes_back(user_client, cal, mscal):
    body = standup(["RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=6"])
    response = user_client.post(url(cal), body, format="json")
    assert response.status_code == 201, response.content
    assert sent(mscal, "POST")["recurrence"] == {
        "pattern": {"type": "weekly", "interval": 2, "daysOfWeek": ["monday", "wednesday"], "firstDayOfWeek": "monday"},
        "range": {
            "type": "numbered",
            "numberOfOccurrences": 6,
            "startDate": "2026-03-02",
            "recurrenceTimeZone": "Europe/Berlin",
        },
    }
    assert response.json()["recurrence"] == ["RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=6"]


@pytest.mark.parametrize(
    ("rule", "part"),
    [
        ("RRULE:FREQ=HOURLY;COUNT=3", "FREQ=HOURLY"),
        ("RRULE:FREQ=DAILY;BYHOUR=9,17", "BYHOUR"),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=1,15", "BYMONTHDAY=1,15"),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=-1", "BYMONTHDAY=-1"),
        ("RRULE:FREQ=MONTHLY;BYDAY=5FR", "BYDAY=5FR"),
        ("RRULE:FREQ=YEARLY;BYWEEKNO=20", "BYWEEKNO"),
    ],
)
def test_a_rule_outlook_cannot_express_is_400_naming_it_and_sends_nothing(user_client, cal, mscal, rule, part):
    before = len(mscal.requests)
    body = {"title": "x", "start": "2026-03-02T09:00:00", "end": "2026-03-02T10:00:00", "recurrence": [rule]}
    response = user_client.post(url(cal), body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "unsupported_recurrence" and response.json()["part"] == part
    assert part in response.json()["detail"] and len(mscal.requests) == before


def test_an_exdate_is_an_occurrence_deleted_after_the_series_is_made(user_client, cal, mscal):
    body = standup(["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4", "EXDATE;TZID=Europe/Berlin:20260316T090000"])
    response = user_client.post(url(cal), body, format="json")
    assert response.status_code == 201, response.content
    master = response.json()["event_id"]
    assert f"{master}-occ-20260316" in mscal.deleted_occurrences
    assert [r.url.path for r in mscal.requests if r.method == "DELETE"] == [f"/v1.0/me/events/{master}-occ-20260316"]
    # Read back from the series' cancelledOccurrences: the answer says what Graph keeps.
    assert response.json()["recurrence"] == [
        "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4",
        "EXDATE;TZID=Europe/Berlin:20260316T090000",
    ]


def test_following_ends_the_series_before_the_occurrence_and_starts_a_new_one(user_client, cal, mscal):
    body = standup(["RRULE:FREQ=WEEKLY;BYDAY=MO"])
    master = user_client.post(url(cal), body, format="json").json()
    # Berlin changes to summer time on March 29: the occurrence of April 6 is 07:00 UTC, still 09:00 there.
    response = user_client.patch(
        url(cal, master["id"]) + "?scope=following&original_start=2026-04-06T07:00:00Z",
        {"title": "Later"},
        format="json",
    )
    assert response.status_code == 200, response.content
    new = response.json()
    assert new["start_local"] == "2026-04-06T09:00:00+02:00" and new["title"] == "Later"
    old = mscal.events[master["event_id"]]["recurrence"]["range"]
    assert old["type"] == "endDate" and old["endDate"] == "2026-04-05"
    assert mscal.events[new["event_id"]]["recurrence"]["range"]["startDate"] == "2026-04-06"


def test_this_changes_one_occurrence(user_client, cal, mscal):
    body = standup(["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=5"])
    master = user_client.post(url(cal), body, format="json").json()
    response = user_client.patch(
        url(cal, master["id"]) + "?scope=this&original_start=2026-03-09T08:00:00Z", {"title": "Moved"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["recurring_event_id"] == master["event_id"]
    assert mscal.events[f"{master['event_id']}-occ-20260309"]["subject"] == "Moved"


def test_delta_sync_reads_changes_and_removals_and_restarts_when_the_link_expired(cal, mscal):
    keep = mscal.add(
        subject="One",
        start={"dateTime": "2026-05-04T10:00:00.0000000", "timeZone": "UTC"},
        end={"dateTime": "2026-05-04T11:00:00.0000000", "timeZone": "UTC"},
    )
    gone = mscal.add(
        subject="Two",
        start={"dateTime": "2026-05-05T10:00:00.0000000", "timeZone": "UTC"},
        end={"dateTime": "2026-05-05T11:00:00.0000000", "timeZone": "UTC"},
    )
    calendar_sync(calendar_id=cal.pk)
    cal.refresh_from_db()
    assert "$deltatoken=" in cal.delta_link and CalendarEvent.objects.count() == 2
    mscal.events[keep]["subject"] = "One (renamed)"
    mscal._etag(keep)
    mscal.remove(gone)
    changed = calendar_sync(calendar_id=cal.pk)
    assert {r.external_id for r in changed} == {keep, gone}
    assert CalendarEvent.objects.get(external_id=keep).title == "One (renamed)"
    assert CalendarEvent.objects.get(external_id=gone).status == "cancelled"
    cal.refresh_from_db()
    mscal.expired.add(cal.delta_link.rsplit("=", 1)[1])
    calendar_sync(calendar_id=cal.pk)
    deltas = [r for r in mscal.requests if r.url.path.endswith("/calendarView/delta")]
    assert "$deltatoken" in deltas[-2].url.params and "$deltatoken" not in deltas[-1].url.params


def test_a_series_seen_through_its_occurrences_is_stored_with_its_rule(cal, mscal):
    eid = mscal.add(
        type="seriesMaster",
        subject="Weekly",
        start={"dateTime": "2026-05-04T09:00:00.0000000", "timeZone": "W. Europe Standard Time"},
        end={"dateTime": "2026-05-04T09:30:00.0000000", "timeZone": "W. Europe Standard Time"},
        originalStartTimeZone="W. Europe Standard Time",
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "firstDayOfWeek": "monday"},
            "range": {
                "type": "endDate",
                "startDate": "2026-05-04",
                "endDate": "2026-05-25",
                "recurrenceTimeZone": "W. Europe Standard Time",
            },
        },
    )
    calendar_sync(calendar_id=cal.pk)
    master = CalendarEvent.objects.get(external_id=eid)
    assert master.recurrence == ["RRULE:FREQ=WEEKLY;BYDAY=MO;WKST=MO;UNTIL=20260525T215959Z"]
    assert master.time_zone == "Europe/Berlin"
    assert CalendarEvent.objects.filter(recurring_event_id=eid).count() == 4


class TestSubscriptions:
    def test_watch_subscribes_to_the_calendars_events_with_a_secret_client_state(self, cal, mscal):
        calendar = calendar_watch(calendar_id=cal.pk)
        sub = mscal.subscriptions[calendar.subscription_id]
        assert sub["resource"] == "/me/calendars/AAMkCal1/events"
        assert (
            sub["notificationUrl"]
            == sub["lifecycleNotificationUrl"]
            == "https://hub.example.com/webhooks/outlook-calendar/"
        )
        assert sub["clientState"] == calendar.client_state and len(calendar.client_state) >= 32

    def test_a_notification_syncs_incrementally(
        self, client, cal, mscal, calendars_eager, django_capture_on_commit_callbacks
    ):
        calendar_sync(calendar_id=cal.pk)
        calendar = calendar_watch(calendar_id=cal.pk)
        eid = mscal.add(
            subject="New",
            start={"dateTime": "2026-05-04T10:00:00.0000000", "timeZone": "UTC"},
            end={"dateTime": "2026-05-04T11:00:00.0000000", "timeZone": "UTC"},
        )
        item = {
            "subscriptionId": calendar.subscription_id,
            "clientState": calendar.client_state,
            "changeType": "created",
            "resource": f"Users/u/Events/{eid}",
            "resourceData": {"@odata.etag": mscal.events[eid]["@odata.etag"], "id": eid},
        }
        response = client.post("/webhooks/outlook-calendar/", {"value": [item]}, content_type="application/json")
        assert response.status_code == 200, response.content
        with django_capture_on_commit_callbacks(execute=True):
            webhook_process(WebhookEvent.objects.get(provider="outlook_calendar").pk)
        assert CalendarEvent.objects.filter(external_id=eid).exists()
        deltas = [r for r in mscal.requests if r.url.path.endswith("/calendarView/delta")]
        assert "$deltatoken" in deltas[-1].url.params

    def test_reauthorization_required_renews_the_subscription(
        self, client, cal, mscal, calendars_eager, django_capture_on_commit_callbacks
    ):
        calendar = calendar_watch(calendar_id=cal.pk)
        item = {
            "subscriptionId": calendar.subscription_id,
            "clientState": calendar.client_state,
            "lifecycleEvent": "reauthorizationRequired",
        }
        assert (
            client.post("/webhooks/outlook-calendar/", {"value": [item]}, content_type="application/json").status_code
            == 200
        )
        with django_capture_on_commit_callbacks(execute=True):
            webhook_process(WebhookEvent.objects.get(provider="outlook_calendar").pk)
        assert sent(mscal, "PATCH") == {"expirationDateTime": sent(mscal, "PATCH")["expirationDateTime"]}
        assert Calendar.objects.get(pk=cal.pk).subscription_id == calendar.subscription_id

    def test_a_removed_subscription_is_created_again(self, cal, mscal):
        calendar = calendar_watch(calendar_id=cal.pk)
        mscal.subscriptions.clear()
        again = calendar_watch(calendar_id=cal.pk)
        assert again.subscription_id != calendar.subscription_id and again.subscription_id in mscal.subscriptions

    def test_a_retry_after_a_create_that_timed_out_leaves_one_subscription_the_hub_knows(self, user_client, cal, mscal):
        """Graph made the subscription but its answer never came: the hub recorded nothing, and the retry made a
        second one. The first, unknown to the hub, sent every change of the calendar to it (refused, no
        clientState to check) until it lapsed."""
        hook = "https://hub.example.com/webhooks/outlook-calendar/"
        # Another hub user's connection to the same Outlook calendar: its subscription is recorded and stays.
        other = UserFactory()
        other_conn = _connection(other, "microsoft_oauth", "grace@contoso.com", mscal.token, ["Calendars.Read"])
        Calendar.objects.create(
            owner=other, connection=other_conn, kind="microsoft", external_id="AAMkCal1", subscription_id="sub-other"
        )
        mscal.subscriptions["sub-other"] = {"id": "sub-other", "resource": "/me/calendars/AAMkCal1/events"}
        # Another calendar's, its watch still waiting for Graph's answer; and the mail's: not this watch's to touch.
        mscal.subscriptions["sub-cal2"] = {"id": "sub-cal2", "resource": "/me/calendars/AAMkCal2/events"}
        mscal.subscriptions["sub-mail"] = {"id": "sub-mail", "resource": "me/mailFolders('inbox')/messages"}
        for sub in mscal.subscriptions.values():
            sub["notificationUrl"] = hook
        mscal.subscriptions["sub-mail"]["notificationUrl"] = "https://hub.example.com/webhooks/outlook/"
        mscal.lose_next = ["POST"]

        first = user_client.post(f"{CALS}{cal.pk}/watch/")
        assert first.status_code == 504, first.content
        assert Calendar.objects.get(pk=cal.pk).subscription_id == ""  # the hub cannot know what Graph made
        [lost] = set(mscal.subscriptions) - {"sub-other", "sub-cal2", "sub-mail"}

        retry = user_client.post(f"{CALS}{cal.pk}/watch/")
        assert retry.status_code == 200, retry.content
        calendar = Calendar.objects.get(pk=cal.pk)
        assert calendar.subscription_id != lost
        assert sorted(mscal.subscriptions) == sorted(["sub-other", "sub-cal2", "sub-mail", calendar.subscription_id])
        # What Graph delivers for it verifies: the clientState it was made with is the one the hub holds.
        assert mscal.subscriptions[calendar.subscription_id]["clientState"] == calendar.client_state

    def test_disconnecting_deletes_the_subscription_first(self, user_client, cal, mscal, mscal_conn):
        calendar = calendar_watch(calendar_id=cal.pk)
        assert user_client.delete(f"/api/v1/connections/{mscal_conn.pk}/").status_code in (200, 204)
        assert calendar.subscription_id not in mscal.subscriptions


def test_another_users_microsoft_calendar_is_404(client_for, cal):
    assert client_for(UserFactory()).get(url(cal)).status_code == 404


def test_a_full_sync_leaves_rows_outside_its_window_alone(user_client, cal, mscal):
    far = {"title": "Far ahead", "start": "2030-01-07T09:00:00Z", "end": "2030-01-07T10:00:00Z"}
    made = user_client.post(url(cal), far, format="json").json()
    calendar_sync(calendar_id=cal.pk)  # the first sync reads a year around now: the 2030 event is not in it
    assert CalendarEvent.objects.get(pk=made["id"]).status == "confirmed"
