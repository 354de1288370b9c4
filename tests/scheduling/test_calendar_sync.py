"""Google calendar sync and push: syncToken increments, 410 -> full resync, channels, the meeting that follows."""

import datetime as dt

import pytest
import time_machine

from integrations.models import Connection, WebhookEvent
from integrations.webhooks.tasks import webhook_process
from scheduling.calendars.sync import calendar_sync, calendar_watch, calendars_renew_due, channel_token
from scheduling.models import Calendar, CalendarEvent, Meeting
from tests.integrations.factories import ConnectionFactory

from .helpers import URL, body
from .test_calendar_google import calendar_id, events_url

pytestmark = pytest.mark.django_db
ADA = "ada@example.com"
HOOK = "/webhooks/google-calendar/"


def timed(start, minutes=30, zone="Europe/Berlin", **extra):
    end = start + dt.timedelta(minutes=minutes)
    return {
        "summary": "Review",
        "start": {"dateTime": start.isoformat(), "timeZone": zone},
        "end": {"dateTime": end.isoformat(), "timeZone": zone},
        **extra,
    }


def notify(client, calendar, number, state="exists", token=None):
    return client.post(
        HOOK,
        b"",
        content_type="application/json; utf-8",
        CONTENT_TYPE="application/json; utf-8",  # the test client drops it for an empty body otherwise
        HTTP_X_GOOG_CHANNEL_ID=calendar.channel_id,
        HTTP_X_GOOG_CHANNEL_TOKEN=token or channel_token(calendar.channel_id),
        HTTP_X_GOOG_RESOURCE_ID=calendar.channel_resource_id,
        HTTP_X_GOOG_RESOURCE_STATE=state,
        HTTP_X_GOOG_MESSAGE_NUMBER=str(number),
    )


@pytest.fixture
def ada_calendar(user_client, gcal_conn, gcal):
    return Calendar.objects.get(pk=calendar_id(user_client))


def test_the_first_sync_is_full_and_later_ones_read_only_the_changes(ada_calendar, gcal):
    start = dt.datetime(2026, 5, 4, 10, tzinfo=dt.UTC)
    keep = gcal.add(ADA, **timed(start))
    gone = gcal.add(ADA, **timed(start + dt.timedelta(days=1)))
    calendar_sync(calendar_id=ada_calendar.pk)
    assert set(CalendarEvent.objects.values_list("external_id", flat=True)) == {keep, gone}
    ada_calendar.refresh_from_db()
    assert ada_calendar.sync_token and ada_calendar.full_sync_at is not None
    gcal.edit(
        ADA,
        keep,
        summary="Review (moved)",
        **{k: v for k, v in timed(start + dt.timedelta(hours=2)).items() if k != "summary"},
    )
    gcal.remove(ADA, gone)
    changed = calendar_sync(calendar_id=ada_calendar.pk)
    assert {r.external_id for r in changed} == {keep, gone}
    assert gcal.requests[-1]["params"]["syncToken"] == ada_calendar.sync_token
    row = CalendarEvent.objects.get(external_id=keep)
    assert row.title == "Review (moved)" and row.start == start + dt.timedelta(hours=2)
    assert CalendarEvent.objects.get(external_id=gone).status == "cancelled"
    assert CalendarEvent.objects.get(external_id=gone).title == "Review"  # the cancelled stub keeps what we knew
    assert calendar_sync(calendar_id=ada_calendar.pk) == []  # nothing new: nothing changes


def test_a_sync_token_google_expired_means_a_full_resync(ada_calendar, gcal):
    first = gcal.add(ADA, **timed(dt.datetime(2026, 5, 4, 10, tzinfo=dt.UTC)))
    calendar_sync(calendar_id=ada_calendar.pk)
    ada_calendar.refresh_from_db()
    gcal.expired.add(ada_calendar.sync_token)
    del gcal.events[ADA][first]  # gone while we could not see it
    second = gcal.add(ADA, **timed(dt.datetime(2026, 5, 5, 10, tzinfo=dt.UTC)))
    calendar_sync(calendar_id=ada_calendar.pk)
    listed = [r for r in gcal.requests if r["path"].endswith(f"{ADA}/events") and r["method"] == "GET"]
    assert "syncToken" in listed[-2]["params"] and "syncToken" not in listed[-1]["params"]
    assert CalendarEvent.objects.get(external_id=first).status == "cancelled"
    assert CalendarEvent.objects.get(external_id=second).status == "confirmed"


def test_pages_are_followed_to_the_sync_token(ada_calendar, gcal):
    gcal.page_size = 2
    for n in range(5):
        gcal.add(ADA, **timed(dt.datetime(2026, 5, 4, 10 + n, tzinfo=dt.UTC)))
    calendar_sync(calendar_id=ada_calendar.pk)
    assert CalendarEvent.objects.count() == 5
    ada_calendar.refresh_from_db()
    assert ada_calendar.sync_token == f"tok-{gcal.log[-1][0]}"


def test_listing_events_syncs_a_calendar_never_synced(user_client, ada_calendar, gcal):
    gcal.add(ADA, **timed(dt.datetime(2026, 5, 4, 10, tzinfo=dt.UTC)))
    response = user_client.get(events_url(ada_calendar.pk))
    assert response.status_code == 200 and [e["title"] for e in response.json()["results"]] == ["Review"]
    window = user_client.get(events_url(ada_calendar.pk) + "?start=2026-06-01T00:00:00Z&end=2026-06-02T00:00:00Z")
    assert window.json()["results"] == []


class TestPush:
    def test_watch_opens_a_channel_with_a_token_bound_to_its_id(self, ada_calendar, gcal):
        calendar = calendar_watch(calendar_id=ada_calendar.pk)
        channel = gcal.channels[calendar.channel_id]
        assert channel["address"] == "https://hub.example.com/webhooks/google-calendar/"
        assert channel["token"] == channel_token(calendar.channel_id) and channel["type"] == "web_hook"
        assert calendar.channel_resource_id == channel["resourceId"] and calendar.channel_expires_at > dt.datetime.now(
            dt.UTC
        )

    def test_renewal_opens_a_new_channel_and_closes_the_old_one(self, ada_calendar, gcal):
        old = calendar_watch(calendar_id=ada_calendar.pk)
        new = calendar_watch(calendar_id=ada_calendar.pk)
        assert new.channel_id != old.channel_id and list(gcal.channels) == [new.channel_id]
        assert gcal.stopped == [{"id": old.channel_id, "resourceId": old.channel_resource_id}]

    def test_disconnecting_a_connection_whose_google_account_another_user_connected_closes_its_own_channel(
        self, user_client, ada_calendar, gcal, gcal_conn, other_user
    ):
        # The grant (and Gmail's one watch per mailbox) stay for the other connection; a channel is this one's.
        ConnectionFactory(owner=other_user, provider="google_oauth", account=ADA, capabilities=["calendar"])
        calendar = calendar_watch(calendar_id=ada_calendar.pk)
        response = user_client.delete(f"/api/v1/connections/{gcal_conn.pk}/")
        assert response.status_code == 200 and response.json()["revoked"] is False
        assert gcal.stopped == [{"id": calendar.channel_id, "resourceId": calendar.channel_resource_id}]

    def test_the_beat_renews_channels_that_end_within_a_day(
        self, ada_calendar, gcal, calendars_eager, django_capture_on_commit_callbacks
    ):
        old = calendar_watch(calendar_id=ada_calendar.pk)
        assert calendars_renew_due() == 0
        Calendar.objects.filter(pk=old.pk).update(channel_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=3))
        with django_capture_on_commit_callbacks(execute=True):
            assert calendars_renew_due() == 1
        assert Calendar.objects.get(pk=old.pk).channel_id != old.channel_id

    def test_a_notification_runs_an_incremental_sync_once(
        self, client, ada_calendar, gcal, calendars_eager, django_capture_on_commit_callbacks
    ):
        calendar_sync(calendar_id=ada_calendar.pk)
        calendar = calendar_watch(calendar_id=ada_calendar.pk)
        assert notify(client, calendar, 1, state="sync").status_code == 200
        eid = gcal.add(ADA, **timed(dt.datetime(2026, 5, 4, 10, tzinfo=dt.UTC)))
        assert notify(client, calendar, 2).status_code == 200
        assert notify(client, calendar, 2).json()["status"] == "duplicate"
        for event in WebhookEvent.objects.filter(provider="google_calendar").order_by("pk"):
            with django_capture_on_commit_callbacks(execute=True):
                webhook_process(event.pk)
            event.refresh_from_db()
            assert event.status == "processed", event.last_error
        lists = [r for r in gcal.requests if r["path"].endswith(f"{ADA}/events") and r["method"] == "GET"]
        assert len(lists) == 2 and "syncToken" in lists[-1]["params"]  # the push's sync was incremental
        assert CalendarEvent.objects.filter(external_id=eid).exists()
        assert Calendar.objects.get(pk=calendar.pk).sync_due is False

    def test_a_token_for_another_channel_or_an_unknown_channel_is_403(self, client, ada_calendar, gcal):
        calendar = calendar_watch(calendar_id=ada_calendar.pk)
        response = notify(client, calendar, 3, token=channel_token("some-other-channel"))
        assert response.status_code == 403 and response.json()["error"] == "bad_signature"
        Calendar.objects.filter(pk=calendar.pk).update(channel_id="renewed-since")
        response = notify(client, calendar, 4)
        assert response.status_code == 403 and response.json()["error"] == "unknown_channel"
        assert not WebhookEvent.objects.exists()

    def test_a_channel_google_answers_without_its_resource_id_is_not_stored(self, user_client, ada_calendar, gcal):
        # Without the resource id the hub could neither match deliveries to the channel nor close it.
        gcal.watch_leaves_out = ("resourceId",)
        response = user_client.post(f"/api/v1/calendars/{ada_calendar.pk}/watch/")
        assert response.status_code == 502, response.content
        row = Calendar.objects.get(pk=ada_calendar.pk)
        assert (row.channel_id, row.channel_resource_id, row.channel_expires_at) == ("", "", None)

    def test_a_notification_for_a_channel_stored_without_its_resource_id_is_403(self, client, ada_calendar, gcal):
        calendar = calendar_watch(calendar_id=ada_calendar.pk)
        Calendar.objects.filter(pk=calendar.pk).update(channel_resource_id="")  # a row stored before it was refused
        response = notify(client, calendar, 6)  # any X-Goog-Resource-ID: it was accepted
        assert response.status_code == 403 and response.json()["error"] == "unknown_channel"
        assert not WebhookEvent.objects.exists()

    def test_the_beat_renews_a_channel_stored_without_its_resource_id(
        self, client, ada_calendar, gcal, calendars_eager, django_capture_on_commit_callbacks
    ):
        old = calendar_watch(calendar_id=ada_calendar.pk)
        Calendar.objects.filter(pk=old.pk).update(channel_resource_id="")  # its deliveries are refused
        with django_capture_on_commit_callbacks(execute=True):
            assert calendars_renew_due() == 1
        renewed = Calendar.objects.get(pk=old.pk)
        assert renewed.channel_id != old.channel_id and renewed.channel_resource_id
        assert notify(client, renewed, 1).status_code == 200

    def test_a_channel_google_answers_without_an_expiration_is_renewed_before_the_default_week_ends(
        self, ada_calendar, gcal, calendars_eager, django_capture_on_commit_callbacks, settings
    ):
        # Google's answer names the expiration as optional; the channel still ends (params.ttl, default a week).
        gcal.watch_leaves_out = ("expiration",)
        settings.CALENDAR_WATCH_TTL_SECONDS = 30 * 24 * 3600  # more than Google's documented default
        before = dt.datetime.now(dt.UTC)
        old = calendar_watch(calendar_id=ada_calendar.pk)
        assert before + dt.timedelta(days=7) <= old.channel_expires_at <= dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
        assert calendars_renew_due() == 0
        with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=6, hours=1)):
            Connection.objects.filter(pk=ada_calendar.connection_id).update(
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            )
            with django_capture_on_commit_callbacks(execute=True):
                assert calendars_renew_due() == 1
        assert Calendar.objects.get(pk=old.pk).channel_id != old.channel_id

    def test_a_channel_stored_without_an_expiration_is_renewed_by_the_next_beat(
        self, ada_calendar, gcal, calendars_eager, django_capture_on_commit_callbacks
    ):
        old = calendar_watch(calendar_id=ada_calendar.pk)
        Calendar.objects.filter(pk=old.pk).update(channel_expires_at=None)  # a row stored before it was defaulted
        with django_capture_on_commit_callbacks(execute=True):
            assert calendars_renew_due() == 1
        renewed = Calendar.objects.get(pk=old.pk)
        assert renewed.channel_id != old.channel_id and renewed.channel_expires_at is not None

    def test_a_lost_sync_message_is_sent_again_by_the_outbox(self, client, ada_calendar, gcal):
        from integrations import outbox
        from scheduling.tasks import calendar_sync_task

        calendar = calendar_watch(calendar_id=ada_calendar.pk)
        notify(client, calendar, 5)
        event = WebhookEvent.objects.get(provider="google_calendar")
        webhook_process(event.pk)  # the handler queued the sync; the message is never delivered
        row = Calendar.objects.get(pk=calendar.pk)
        assert row.sync_due and row.next_attempt_at is not None
        assert outbox.kind_for(calendar_sync_task).model is Calendar


def test_moving_a_zoom_meetings_event_in_google_reschedules_the_meeting_through_the_sync(
    user_client, ada_calendar, gcal, zoom, calendars_eager, django_capture_on_commit_callbacks, client
):
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).replace(microsecond=0)
    eid = gcal.add(ADA, **timed(start, minutes=45))
    calendar_sync(calendar_id=ada_calendar.pk)
    ref = {"connection": ada_calendar.connection_id, "event_id": eid}
    meeting = user_client.post(
        URL, body("zoom", start_time=start.isoformat(), calendar_event=ref), format="json"
    ).json()
    calendar = calendar_watch(calendar_id=ada_calendar.pk)
    later = start + dt.timedelta(days=1, hours=2)
    gcal.edit(ADA, eid, **{k: v for k, v in timed(later, minutes=60).items() if k != "summary"})
    notify(client, calendar, 7)
    with django_capture_on_commit_callbacks(execute=True):
        webhook_process(WebhookEvent.objects.get(provider="google_calendar").pk)
    row = Meeting.objects.get(pk=meeting["id"])
    assert row.start_time == later and row.duration_minutes == 60
    assert zoom.meetings[meeting["meeting_id"]]["start_time"] == later.strftime("%Y-%m-%dT%H:%M:%SZ")
    gcal.remove(ADA, eid)
    notify(client, calendar, 8)
    with django_capture_on_commit_callbacks(execute=True):
        webhook_process(WebhookEvent.objects.filter(provider="google_calendar").latest("pk").pk)
    assert Meeting.objects.get(pk=meeting["id"]).status == "cancelled"


def test_a_write_through_the_api_drops_the_connections_cached_free_busy(user_client, ada_calendar, gcal):
    from django.core.cache import cache

    from scheduling.availability import _version_key

    before = cache.get(_version_key(ada_calendar.connection_id))
    user_client.post(
        events_url(ada_calendar.pk),
        {"title": "x", "start": "2026-05-04T10:00:00Z", "end": "2026-05-04T11:00:00Z"},
        format="json",
    )
    assert cache.get(_version_key(ada_calendar.connection_id)) != before


class TestStartingPush:
    def test_watch_opens_the_channel_and_syncs(self, user_client, ada_calendar, gcal):
        gcal.add(ADA, **timed(dt.datetime(2026, 5, 4, 10, tzinfo=dt.UTC)))
        response = user_client.post(f"/api/v1/calendars/{ada_calendar.pk}/watch/")
        assert response.status_code == 200, response.content
        assert response.json()["push"]["active"] is True and CalendarEvent.objects.count() == 1
        assert list(gcal.channels) == [Calendar.objects.get(pk=ada_calendar.pk).channel_id]

    def test_watch_needs_an_https_app_url_and_the_channel_secret(self, user_client, ada_calendar, gcal, settings):
        settings.APP_URL = "http://127.0.0.1:8000"
        response = user_client.post(f"/api/v1/calendars/{ada_calendar.pk}/watch/")
        assert response.status_code == 409 and response.json()["error"] == "push_unreachable"
        settings.APP_URL, settings.GOOGLE_CALENDAR_CHANNEL_SECRET = "https://hub.example.com", ""
        response = user_client.post(f"/api/v1/calendars/{ada_calendar.pk}/watch/")
        assert response.status_code == 503 and response.json()["missing"] == ["GOOGLE_CALENDAR_CHANNEL_SECRET"]
        assert not gcal.channels

    def test_another_users_calendar_cannot_be_watched(self, client_for, ada_calendar, gcal):
        from ..factories import UserFactory

        assert client_for(UserFactory()).post(f"/api/v1/calendars/{ada_calendar.pk}/watch/").status_code == 404
        assert not gcal.channels

    def test_new_calendars_start_push_by_themselves_when_the_hub_is_reachable(
        self, user_client, gcal_conn, gcal, calendars_eager, django_capture_on_commit_callbacks, settings
    ):
        with django_capture_on_commit_callbacks(execute=True):
            assert user_client.get("/api/v1/calendars/?refresh=1").status_code == 200
        assert len(gcal.channels) == 2  # both calendars
        settings.CALENDAR_PUSH_AUTO = False
        Calendar.objects.all().delete()
        with django_capture_on_commit_callbacks(execute=True):
            user_client.get("/api/v1/calendars/?refresh=1")
        assert len(gcal.channels) == 2 and not Calendar.objects.exclude(channel_id="").exists()


def test_moving_or_cancelling_the_event_through_the_calendar_api_moves_or_cancels_the_zoom_meeting(
    user_client, ada_calendar, gcal, zoom
):
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).replace(microsecond=0)
    eid = gcal.add(ADA, **timed(start, minutes=45))
    calendar_sync(calendar_id=ada_calendar.pk)
    row = CalendarEvent.objects.get(external_id=eid)
    ref = {"connection": ada_calendar.connection_id, "event_id": eid}
    meeting = user_client.post(
        URL, body("zoom", start_time=start.isoformat(), calendar_event=ref), format="json"
    ).json()
    later = start + dt.timedelta(hours=3)
    response = user_client.patch(events_url(ada_calendar.pk, row.pk), {"start": later.isoformat()}, format="json")
    assert response.status_code == 200, response.content
    assert Meeting.objects.get(pk=meeting["id"]).start_time == later
    assert zoom.meetings[meeting["meeting_id"]]["start_time"] == later.strftime("%Y-%m-%dT%H:%M:%SZ")
    patches = len([r for r in zoom.requests if r.method == "PATCH"])
    calendar_sync(calendar_id=ada_calendar.pk)  # the sync reads our own change back: nothing moves again
    assert len([r for r in zoom.requests if r.method == "PATCH"]) == patches
    assert user_client.delete(events_url(ada_calendar.pk, row.pk)).status_code == 204
    assert Meeting.objects.get(pk=meeting["id"]).status == "cancelled"


def test_an_api_edit_made_while_a_sync_reads_is_not_overwritten_by_the_older_copy(
    user_client, ada_calendar, gcal, monkeypatch
):
    start = dt.datetime(2026, 5, 4, 10, tzinfo=dt.UTC)
    eid = gcal.add(ADA, **timed(start))
    gcal.add(ADA, **timed(start + dt.timedelta(days=1)))
    calendar_sync(calendar_id=ada_calendar.pk)
    row = CalendarEvent.objects.get(external_id=eid)
    gcal.edit(ADA, eid, summary="Review (Google UI)")  # the change the next sync reads

    read = gcal._list

    def list_then_the_user_edits(cid, params):
        answer = read(cid, params)  # the sync's copy, taken before the edit below
        if "syncToken" in params:
            response = user_client.patch(events_url(ada_calendar.pk, row.pk), {"title": "Retro"}, format="json")
            assert response.status_code == 200, response.content
        return answer

    monkeypatch.setattr(gcal, "_list", list_then_the_user_edits)
    calendar_sync(calendar_id=ada_calendar.pk)
    row.refresh_from_db()
    assert row.title == "Retro"  # what Google has now, not the copy the sync read before the edit
    assert user_client.get(events_url(ada_calendar.pk, row.pk)).json()["title"] == "Retro"


def test_a_series_deleted_in_google_takes_its_changed_occurrences_with_it(user_client, ada_calendar, gcal):
    from .test_calendar_google import weekly

    master = user_client.post(events_url(ada_calendar.pk), weekly(), format="json").json()
    url = events_url(ada_calendar.pk, master["id"]) + "?scope=this&original_start=2026-03-16T13:00:00Z"
    moved = user_client.patch(url, {"title": "Moved standup", "start": "2026-03-16T10:00:00"}, format="json").json()
    calendar_sync(calendar_id=ada_calendar.pk)
    assert user_client.get(events_url(ada_calendar.pk, moved["id"])).json()["status"] == "confirmed"

    gcal.remove(ADA, master["event_id"])  # "Delete: all events" in Google Calendar
    calendar_sync(calendar_id=ada_calendar.pk)
    assert user_client.get(events_url(ada_calendar.pk, master["id"])).json()["status"] == "cancelled"
    # The occurrence went with its series: it is no event of the calendar any more.
    assert user_client.get(events_url(ada_calendar.pk, moved["id"])).json()["status"] == "cancelled"
    listed = user_client.get(events_url(ada_calendar.pk)).json()["results"]
    assert [e["status"] for e in listed] == ["cancelled", "cancelled"]


def test_a_renewal_queued_by_two_beats_opens_one_channel(
    ada_calendar, gcal, calendars_eager, django_capture_on_commit_callbacks
):
    old = calendar_watch(calendar_id=ada_calendar.pk)
    Calendar.objects.filter(pk=old.pk).update(channel_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=3))
    with django_capture_on_commit_callbacks() as queued:
        assert calendars_renew_due() == 1
        assert calendars_renew_due() == 1  # the next beat: the first renewal is still waiting for a worker
    for send in queued:
        send()
    renewed = Calendar.objects.get(pk=old.pk)
    watches = [r for r in gcal.requests if r["path"].endswith("/watch")]
    assert len(watches) == 2  # the first watch and one renewal
    assert list(gcal.channels) == [renewed.channel_id] and gcal.stopped == [
        {"id": old.channel_id, "resourceId": old.channel_resource_id}
    ]
