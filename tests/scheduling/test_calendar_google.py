"""Google calendars through the API: list, create, change, delete (with recurrence scopes), owner-scoped."""

import datetime as dt

import pytest

from integrations.models import ProviderCall
from scheduling.models import Calendar, CalendarEvent

from ..factories import UserFactory

pytestmark = pytest.mark.django_db
CALS = "/api/v1/calendars/"
TEAM = "team@group.calendar.google.com"


def calendar_id(client, external_id="ada@example.com"):
    listed = client.get(CALS)
    assert listed.status_code == 200, listed.content
    return next(
        c["id"] for c in listed.json()["results"] if Calendar.objects.get(pk=c["id"]).external_id == external_id
    )


def events_url(cid, event=None):
    return f"{CALS}{cid}/events/" + (f"{event}/" if event else "")


def weekly(**extra):
    return {
        "title": "Standup",
        "start": "2026-02-23T09:00:00",
        "end": "2026-02-23T09:30:00",
        "time_zone": "America/New_York",
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=20"],
        **extra,
    }


class TestCalendars:
    def test_the_list_reads_the_connections_calendars_from_google(self, user_client, gcal_conn, gcal):
        response = user_client.get(CALS)
        assert response.status_code == 200
        rows = {c["name"]: c for c in response.json()["results"]}
        assert set(rows) == {"Ada", "Team"}
        assert (
            rows["Ada"]["primary"]
            and rows["Ada"]["time_zone"] == "Europe/Berlin"
            and rows["Ada"]["provider"] == "google"
        )
        assert rows["Team"]["access_role"] == "writer" and rows["Team"]["connection"] == gcal_conn.pk
        assert ProviderCall.objects.filter(provider="google_calendar", operation="calendarList.list").count() == 1

    def test_another_users_calendar_and_events_are_404(self, user_client, client_for, gcal_conn, gcal):
        cid = calendar_id(user_client)
        made = user_client.post(events_url(cid), weekly(recurrence=[]), format="json").json()
        stranger = client_for(UserFactory())
        assert stranger.get(CALS).json()["results"] == []
        assert stranger.get(events_url(cid)).status_code == 404
        assert stranger.post(events_url(cid), weekly(), format="json").status_code == 404
        assert stranger.get(events_url(cid, made["id"])).status_code == 404
        assert stranger.patch(events_url(cid, made["id"]), {"title": "x"}, format="json").status_code == 404
        assert stranger.delete(events_url(cid, made["id"])).status_code == 404
        assert CalendarEvent.objects.get().title == "Standup"

    def test_google_unconfigured_is_503_naming_the_settings(self, user_client, gcal_conn, settings):
        cid = calendar_id(user_client)
        settings.GOOGLE_CLIENT_SECRET = ""
        response = user_client.post(events_url(cid), weekly(), format="json")
        assert response.status_code == 503 and response.json()["error"] == "provider_not_configured"
        assert "GOOGLE_CLIENT_SECRET" in response.json()["missing"]


class TestWrites:
    def test_create_sends_wall_clock_time_in_the_events_zone_and_stores_utc(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        body = weekly(
            location="Room 4",
            attendees=[{"email": "bo@example.com", "name": "Bo"}, {"email": "cy@example.com", "optional": True}],
            reminders={"use_default": False, "overrides": [{"method": "popup", "minutes": 10}]},
            visibility="private",
        )
        response = user_client.post(events_url(cid), body, format="json")
        assert response.status_code == 201, response.content
        event = response.json()
        sent = gcal.requests[-1]
        assert sent["method"] == "POST" and sent["params"]["sendUpdates"] == "all"
        assert sent["body"]["start"] == {"dateTime": "2026-02-23T09:00:00-05:00", "timeZone": "America/New_York"}
        assert sent["body"]["recurrence"] == ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=20"]
        assert sent["body"]["attendees"][1] == {"email": "cy@example.com", "optional": True}
        assert event["start"] == "2026-02-23T14:00:00Z" and event["start_local"] == "2026-02-23T09:00:00-05:00"
        assert event["time_zone"] == "America/New_York" and event["visibility"] == "private"
        assert event["attendees"][0]["response_status"] == "needsAction"
        assert event["reminders"] == {"use_default": False, "overrides": [{"method": "popup", "minutes": 10}]}
        assert event["event_id"] in gcal.events["ada@example.com"]

    def test_an_all_day_event_keeps_its_dates(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        body = {"title": "Offsite", "all_day": True, "start_date": "2026-03-29", "end_date": "2026-03-31"}
        event = user_client.post(events_url(cid), body, format="json").json()
        assert gcal.requests[-1]["body"]["start"] == {"date": "2026-03-29", "timeZone": "Europe/Berlin"}
        assert (event["start_date"], event["end_date"], event["start"]) == ("2026-03-29", "2026-03-31", None)

    @pytest.mark.parametrize(
        ("body", "code", "field"),
        [
            ({"end": "2026-02-23T08:00:00"}, "invalid_time_range", "end"),
            ({"time_zone": "Mars/Olympus"}, "invalid_time_zone", "time_zone"),
            ({"time_zone": "EST5EDT-ish"}, "invalid_time_zone", "time_zone"),
            # A folder of the tz database, not a zone: ZoneInfo raises IsADirectoryError for it (was a 500).
            ({"time_zone": "America/Indiana"}, "invalid_time_zone", "time_zone"),
            ({"recurrence": ["RRULE:FREQ=FORTNIGHTLY"]}, "invalid_recurrence", "recurrence"),
            ({"recurrence": ["RRULE:FREQ=WEEKLY;COUNT=2;UNTIL=20260101"]}, "invalid_recurrence", "recurrence"),
            ({"visibility": "secret"}, "invalid", "visibility"),
            # Dates Python cannot move between zones or expand (year 1, year 9999) were 500s.
            ({"recurrence": ["RRULE:FREQ=WEEKLY;UNTIL=00010101"]}, "invalid_recurrence", "recurrence"),
            ({"recurrence": ["RRULE:FREQ=WEEKLY", "EXDATE:99991231T000000Z"]}, "invalid_recurrence", "recurrence"),
            (
                {"recurrence": ["RRULE:FREQ=WEEKLY", "EXDATE;TZID=Asia/Tokyo:00010101T000000"]},
                "invalid_recurrence",
                "recurrence",
            ),
            (
                {"recurrence": ["RRULE:FREQ=WEEKLY", "EXDATE;TZID=America/Indiana:20260302T090000"]},
                "invalid_recurrence",
                "recurrence",
            ),
        ],
    )
    def test_bad_input_is_400_naming_the_field_and_sends_nothing(self, user_client, gcal_conn, gcal, body, code, field):
        cid = calendar_id(user_client)
        before = len(gcal.requests)
        response = user_client.post(events_url(cid), weekly(**body), format="json")
        assert response.status_code == 400, response.content
        assert response.json()["error"] == code and response.json()["field"] == field
        assert len(gcal.requests) == before and not CalendarEvent.objects.exists()

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"start": "9999-12-31T22:00:00", "end": "9999-12-31T23:00:00"}, "start"),
            ({"start": "0001-01-01T00:10:00", "end": "0001-01-01T00:20:00", "time_zone": "Europe/Berlin"}, "start"),
            ({"all_day": True, "start_date": "9999-12-31", "end": None, "start": None}, "start_date"),
        ],
    )
    def test_a_date_python_cannot_hold_is_400_not_500(self, user_client, gcal_conn, gcal, body, field):
        cid = calendar_id(user_client)
        sent = {k: v for k, v in weekly(recurrence=[], **body).items() if v is not None}
        response = user_client.post(events_url(cid), sent, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()["fields"] and "1900 and 2200" in response.json()["detail"]
        assert not CalendarEvent.objects.exists()

    def test_a_window_or_occurrence_python_cannot_hold_is_400_not_500(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        series = user_client.post(events_url(cid), weekly(), format="json").json()
        for query in (
            "?start=2026-01-01T00:00:00Z&end=9999-12-31T12:00:00Z",
            "?start=9999-12-01T00:00:00Z&end=9999-12-31T12:00:00Z&expand=true",
        ):
            response = user_client.get(events_url(cid) + query)
            assert response.status_code == 400, response.content
            assert "1900 and 2200" in response.json()["detail"]
        url = events_url(cid, series["id"]) + "?scope=this&original_start=0001-01-01T00:00:00%2B05:00"
        response = user_client.patch(url, {"title": "x"}, format="json")
        assert response.status_code == 400 and "original_start" in response.json()["fields"]

    def test_all_day_end_not_after_start_is_400(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        body = {"title": "x", "all_day": True, "start_date": "2026-03-29", "end_date": "2026-03-29"}
        response = user_client.post(events_url(cid), body, format="json")
        assert response.status_code == 400 and response.json()["error"] == "invalid_time_range"

    def test_a_patch_moves_the_event_keeping_its_length(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        event = user_client.post(events_url(cid), weekly(recurrence=[]), format="json").json()
        response = user_client.patch(events_url(cid, event["id"]), {"start": "2026-02-24T15:00:00Z"}, format="json")
        assert response.status_code == 200, response.content
        moved = response.json()
        assert (moved["start"], moved["end"]) == ("2026-02-24T15:00:00Z", "2026-02-24T15:30:00Z")
        assert gcal.requests[-1]["method"] == "PATCH"
        assert gcal.requests[-1]["body"]["start"] == {
            "dateTime": "2026-02-24T10:00:00-05:00",
            "timeZone": "America/New_York",
            "date": None,
        }

    def test_a_timed_event_made_all_day_clears_its_times_at_google(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        event = user_client.post(events_url(cid), weekly(recurrence=[]), format="json").json()
        body = {"all_day": True, "start_date": "2026-02-23", "end_date": "2026-02-24"}
        response = user_client.patch(events_url(cid, event["id"]), body, format="json")
        assert response.status_code == 200, response.content
        assert gcal.requests[-1]["body"]["start"] == {
            "date": "2026-02-23",
            "dateTime": None,
            "timeZone": "America/New_York",
        }
        stored = gcal.events["ada@example.com"][event["event_id"]]
        assert stored["start"] == {"date": "2026-02-23", "timeZone": "America/New_York"}
        assert response.json()["all_day"] and response.json()["start"] is None

    def test_a_patch_of_only_the_title_sends_only_the_title(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        event = user_client.post(events_url(cid), weekly(recurrence=[]), format="json").json()
        user_client.patch(events_url(cid, event["id"]), {"title": "Renamed"}, format="json")
        assert gcal.requests[-1]["body"] == {"summary": "Renamed"}
        assert CalendarEvent.objects.get(pk=event["id"]).title == "Renamed"

    def test_delete_cancels_at_google_and_marks_the_row(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        event = user_client.post(events_url(cid), weekly(recurrence=[]), format="json").json()
        assert user_client.delete(events_url(cid, event["id"]) + "?notify=false").status_code == 204
        assert gcal.requests[-1]["method"] == "DELETE" and gcal.requests[-1]["params"]["sendUpdates"] == "none"
        assert CalendarEvent.objects.get(pk=event["id"]).status == "cancelled"
        # Already gone at Google: a second delete is still done.
        assert user_client.delete(events_url(cid, event["id"])).status_code == 204


class TestRecurringScopes:
    @pytest.fixture
    def series(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        return cid, user_client.post(events_url(cid), weekly(), format="json").json()

    def test_this_changes_one_occurrence_and_makes_it_a_row(self, user_client, gcal, series):
        cid, master = series
        url = events_url(cid, master["id"]) + "?scope=this&original_start=2026-03-16T13:00:00Z"
        response = user_client.patch(url, {"title": "Moved standup", "start": "2026-03-16T10:00:00"}, format="json")
        assert response.status_code == 200, response.content
        occurrence = response.json()
        assert occurrence["recurring_event_id"] == master["event_id"]
        assert occurrence["original_start"] == "2026-03-16T13:00:00Z"
        assert occurrence["start_local"] == "2026-03-16T10:00:00-04:00" and occurrence["title"] == "Moved standup"
        assert gcal.events["ada@example.com"][master["event_id"]]["summary"] == "Standup"
        # The occurrence's own row: a later PATCH without scope touches only it.
        user_client.patch(events_url(cid, occurrence["id"]), {"title": "Again"}, format="json")
        assert gcal.requests[-1]["path"].endswith(occurrence["event_id"])

    def test_this_on_a_series_needs_the_occurrence(self, user_client, gcal, series):
        cid, master = series
        response = user_client.patch(events_url(cid, master["id"]) + "?scope=this", {"title": "x"}, format="json")
        assert response.status_code == 400 and response.json()["field"] == "original_start"

    def test_a_date_for_an_occurrence_of_a_timed_series_is_400(self, user_client, gcal, series):
        cid, master = series
        for scope in ("this", "following"):
            url = events_url(cid, master["id"]) + f"?scope={scope}&original_start=2026-03-16"
            response = user_client.patch(url, {"title": "x"}, format="json")
            assert response.status_code == 400 and response.json()["field"] == "original_start"

    def test_an_occurrence_that_is_not_planned_is_404(self, user_client, gcal, series):
        cid, master = series
        url = events_url(cid, master["id"]) + "?scope=this&original_start=2026-03-17T13:00:00Z"
        assert user_client.patch(url, {"title": "x"}, format="json").status_code == 404

    def test_all_changes_the_series(self, user_client, gcal, series):
        cid, master = series
        response = user_client.patch(events_url(cid, master["id"]) + "?scope=all", {"title": "Sync"}, format="json")
        assert response.status_code == 200
        assert gcal.events["ada@example.com"][master["event_id"]]["summary"] == "Sync"

    def test_following_splits_the_series_and_the_count_carries_over(self, user_client, gcal, series):
        cid, master = series
        url = events_url(cid, master["id"]) + "?scope=following&original_start=2026-03-16T13:00:00Z"
        response = user_client.patch(url, {"title": "Later standup", "start": "2026-03-16T10:00:00"}, format="json")
        assert response.status_code == 200, response.content
        new = response.json()
        old = gcal.events["ada@example.com"][master["event_id"]]
        assert old["recurrence"] == ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=3"]  # Feb 23, Mar 2, Mar 9
        assert new["recurrence"] == ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=17"]
        assert new["start_local"] == "2026-03-16T10:00:00-04:00" and new["end_local"] == "2026-03-16T10:30:00-04:00"
        assert new["title"] == "Later standup" and new["event_id"] != master["event_id"]

    def test_delete_this_cancels_one_occurrence(self, user_client, gcal, series):
        cid, master = series
        url = events_url(cid, master["id"]) + "?scope=this&original_start=2026-03-02T14:00:00Z"
        assert user_client.delete(url).status_code == 204
        cancelled = CalendarEvent.objects.get(recurring_event_id=master["event_id"])
        assert cancelled.status == "cancelled" and cancelled.original_start == dt.datetime(
            2026, 3, 2, 14, tzinfo=dt.UTC
        )
        assert CalendarEvent.objects.get(pk=master["id"]).status == "confirmed"

    def test_delete_following_ends_the_series_before_it(self, user_client, gcal, series):
        cid, master = series
        url = events_url(cid, master["id"]) + "?scope=following&original_start=2026-03-09T13:00:00Z"
        assert user_client.delete(url).status_code == 204
        assert gcal.events["ada@example.com"][master["event_id"]]["recurrence"] == [
            "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=2"
        ]

    def test_a_scope_on_a_single_event_is_400(self, user_client, gcal_conn, gcal):
        cid = calendar_id(user_client)
        event = user_client.post(events_url(cid), weekly(recurrence=[]), format="json").json()
        response = user_client.patch(events_url(cid, event["id"]) + "?scope=following", {"title": "x"}, format="json")
        assert response.status_code == 400 and response.json()["field"] == "scope"
