"""Google Meet lifecycle events (issue 19 point 7): a Workspace Events subscription per Meet space, Pub/Sub
pushes verified by Google's OIDC token, and the worker applying what each event names to the meeting."""

import base64
import datetime as dt
import json
import time
from types import SimpleNamespace

import httpx
import pytest
import responses
from django.utils import timezone

from integrations.models import Connection, ProviderCall, WebhookEvent
from scheduling.models import Meeting, MeetingAttendance, MeetingRecording, MeetingSubscription, SchedulingPreference
from scheduling.services import recording_link_token
from scheduling.tasks import meet_subscribe, meet_subscriptions_due
from tests.privacy.conftest import BUCKET

from ..integrations.oauth.conftest import GOOGLE_TOKEN_URL, google_id_token, query
from .conftest import _connection
from .drive_fake import DRIVE, DRIVE_MEET_READONLY, MP4, insufficient_scope
from .helpers import URL, body, committed_now
from .meet_events_fake import CERTS_URL, CODE, SOURCE, SPACE, TOPIC, WEBHOOK, delivery, token

pytestmark = pytest.mark.django_db


@pytest.fixture
def inline(eager, django_capture_on_commit_callbacks):
    """Run what a request or a handler queues (tasks on commit, eagerly), as a worker would."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


@pytest.fixture
def meeting(user_client, records_conn, inline):
    response = inline(user_client.post, URL, body("google_meet"), format="json")
    assert response.status_code == 201, response.json()
    return Meeting.objects.get(pk=response.json()["id"])


@pytest.fixture
def push(client, meet_push_keys, inline):
    def send(payload, *, bearer=None):
        bearer = bearer if bearer is not None else token(meet_push_keys["good"][0])
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return inline(client.post, WEBHOOK, json.dumps(payload), content_type="application/json", headers=headers)

    return send


def meet_requests(fake, host="workspaceevents.googleapis.com"):
    return [(r["method"], r["path"]) for r in fake.requests if r["host"] == host]


# --- Subscribing ---------------------------------------------------------------------------------------


class TestSubscribing:
    def test_creating_a_meet_meeting_subscribes_its_space_to_every_lifecycle_event(self, meeting, gmeet, user):
        [space_get] = [r for r in gmeet.requests if r["path"].startswith("/v2/spaces/")]
        assert space_get["path"] == f"/v2/spaces/{CODE}" and space_get["host"] == "meet.googleapis.com"
        [create] = [r for r in gmeet.requests if r["host"] == "workspaceevents.googleapis.com"]
        assert (create["method"], create["path"]) == ("POST", "/v1/subscriptions")
        assert create["body"]["targetResource"] == SPACE
        assert create["body"]["notificationEndpoint"] == {"pubsubTopic": TOPIC}
        assert create["body"]["payloadOptions"] == {"includeResource": False}
        assert sorted(create["body"]["eventTypes"]) == sorted(
            f"google.workspace.meet.{t}"
            for t in (
                "conference.v2.started",
                "conference.v2.ended",
                "participant.v2.joined",
                "participant.v2.left",
                "recording.v2.fileGenerated",
                "transcript.v2.fileGenerated",
            )
        )
        sub = MeetingSubscription.objects.get(meeting=meeting)
        assert (sub.kind, sub.provider, sub.status) == ("meet_space", "google_meet", "active")
        assert sub.external_id == "subscriptions/sub-1" and sub.resource == SPACE
        assert sub.expires_at == dt.datetime(2030, 1, 17, 15, tzinfo=dt.UTC)
        calls = ProviderCall.objects.filter(provider="google_meet", owner=user)
        assert sorted(calls.values_list("operation", flat=True)) == [
            "event.insert",
            "spaces.get",
            "subscriptions.create",
        ]

    def test_a_long_running_operation_is_read_again_until_google_finishes(
        self, user_client, records_conn, gmeet, inline
    ):
        gmeet.pending_operations = 1
        response = inline(user_client.post, URL, body("google_meet"), format="json")
        assert response.status_code == 201
        meeting = Meeting.objects.get()
        sub = MeetingSubscription.objects.get(meeting=meeting)
        if not sub.external_id:  # the eager retry did not run it again yet: the next run reads the operation
            assert sub.raw["operation"].startswith("operations/")
            inline(meet_subscribe.delay, meeting.pk)
            sub.refresh_from_db()
        assert sub.external_id == "subscriptions/sub-1" and sub.status == "active"
        assert ("GET", "/v1/operations/op-1") in meet_requests(gmeet)
        assert [m for m, p in meet_requests(gmeet) if p == "/v1/subscriptions"] == ["POST"]  # created once

    def test_a_subscription_that_exists_already_is_adopted_not_duplicated(
        self, user_client, records_conn, gmeet, inline
    ):
        gmeet.subscriptions["subscriptions/old"] = {
            "name": "subscriptions/old",
            "targetResource": SPACE,
            "state": "ACTIVE",
            "expireTime": "2030-01-12T00:00:00Z",
        }
        gmeet.already_exists = True
        inline(user_client.post, URL, body("google_meet"), format="json")
        sub = MeetingSubscription.objects.get()
        assert sub.external_id == "subscriptions/old" and sub.status == "active"
        assert ("GET", "/v1/subscriptions") in meet_requests(gmeet)

    def test_without_the_meet_grant_nothing_is_subscribed_and_the_providers_list_says_so(
        self, user_client, user, gmeet, inline
    ):
        _connection(
            user, "google_oauth", "ada@example.com", gmeet.token, ["https://www.googleapis.com/auth/calendar.events"]
        )
        assert inline(user_client.post, URL, body("google_meet"), format="json").status_code == 201
        assert meet_requests(gmeet) == [] and not MeetingSubscription.objects.exists()
        rows = {r["provider"]: r for r in user_client.get("/api/v1/scheduling/providers/").json()}
        assert "lifecycle_webhooks" in rows["google_meet"]["capabilities"]
        assert rows["google_meet"]["needs_grant"]["lifecycle_webhooks"] == "meeting_records"
        assert rows["google_meet"]["not_configured"] == {}

    def test_without_the_topic_nothing_is_subscribed_and_the_providers_list_names_it(
        self, user_client, records_conn, gmeet, inline, settings
    ):
        settings.GOOGLE_MEET_EVENTS_TOPIC = ""
        settings.ZOOM_WEBHOOK_SECRET_TOKEN = "zoom-webhook-secret"  # Zoom's own lifecycle setting, set
        assert inline(user_client.post, URL, body("google_meet"), format="json").status_code == 201
        assert meet_requests(gmeet) == [] and not MeetingSubscription.objects.exists()
        rows = {r["provider"]: r for r in user_client.get("/api/v1/scheduling/providers/").json()}
        assert rows["google_meet"]["not_configured"] == {"lifecycle_webhooks": ["GOOGLE_MEET_EVENTS_TOPIC"]}
        assert rows["zoom"]["not_configured"] == {}

    def test_the_sweep_renews_what_ends_soon_to_googles_longest_lifetime(self, meeting, gmeet, inline):
        MeetingSubscription.objects.update(expires_at=timezone.now() + dt.timedelta(hours=2))
        gmeet.expire_time = "2030-01-20T09:00:00Z"
        inline(meet_subscriptions_due.delay)
        [patch] = [r for r in gmeet.requests if r["method"] == "PATCH"]
        assert patch["path"] == "/v1/subscriptions/sub-1"
        assert patch["params"]["updateMask"] == "ttl" and patch["body"] == {"ttl": "0s"}
        sub = MeetingSubscription.objects.get()
        assert sub.expires_at == dt.datetime(2030, 1, 20, 9, tzinfo=dt.UTC) and sub.status == "active"

    def test_the_sweep_lets_a_long_past_meeting_lapse(self, meeting, gmeet, inline):
        Meeting.objects.filter(pk=meeting.pk).update(start_time=timezone.now() - dt.timedelta(days=10))
        MeetingSubscription.objects.update(expires_at=timezone.now() + dt.timedelta(hours=2))
        inline(meet_subscriptions_due.delay)
        assert [r for r in gmeet.requests if r["method"] == "PATCH"] == []

    def test_the_sweep_subscribes_a_meeting_whose_message_was_lost(self, meeting, gmeet, inline):
        MeetingSubscription.objects.all().delete()
        gmeet.subscriptions.clear()
        inline(meet_subscriptions_due.delay)
        assert MeetingSubscription.objects.get(meeting=meeting).external_id == "subscriptions/sub-2"

    def test_a_subscription_google_let_go_is_made_again_on_renewal(self, meeting, gmeet, inline):
        gmeet.subscriptions.clear()  # expired and deleted at Google
        MeetingSubscription.objects.update(expires_at=timezone.now() + dt.timedelta(hours=2))
        inline(meet_subscriptions_due.delay)
        sub = MeetingSubscription.objects.get()
        assert sub.external_id == "subscriptions/sub-2" and sub.status == "active"

    def test_cancelling_the_meeting_deletes_its_subscription(self, meeting, gmeet, user_client, inline):
        assert inline(user_client.delete, f"{URL}{meeting.pk}/").json()["status"] == "cancelled"
        assert ("DELETE", "/v1/subscriptions/sub-1") in meet_requests(gmeet)
        assert MeetingSubscription.objects.get().status == "ended" and not gmeet.subscriptions

    def test_a_meeting_cancelled_while_its_subscription_is_made_keeps_none_at_google(
        self, user_client, records_conn, gmeet, inline
    ):
        made = user_client.post(URL, body("google_meet"), format="json")  # its subscribe task is run below
        meeting = Meeting.objects.get(pk=made.json()["id"])

        def cancel():  # the owner cancels while Google is making the subscription; the close task runs at once
            gmeet.while_creating = None
            answer = committed_now(user_client.delete, f"{URL}{meeting.pk}/")
            assert answer.json()["status"] == "cancelled"

        gmeet.while_creating = cancel
        inline(meet_subscribe.delay, meeting.pk)
        assert gmeet.subscriptions == {}
        assert ("DELETE", "/v1/subscriptions/sub-1") in meet_requests(gmeet)
        assert MeetingSubscription.objects.get(meeting=meeting).status == "ended"

    def test_a_close_that_read_the_row_before_the_create_stored_it_leaves_it_to_the_close_the_create_queued(
        self, user_client, records_conn, gmeet, inline, monkeypatch
    ):
        """The cancel's close task read the row while Google was still making the subscription (no name yet);
        the create then stored it and, the meeting cancelled, queued a close of its own. The first close marked
        the row ended whatever it held, the second found it ended and skipped: the subscription stayed at
        Google, delivering until it lapsed. That close makes no provider call between its read and its write,
        so its read is answered here as it was (the one lookup of the row it makes, patched once)."""
        made = user_client.post(URL, body("google_meet"), format="json")  # its subscribe task is run below
        meeting = Meeting.objects.get(pk=made.json()["id"])
        lookup = MeetingSubscription.objects.select_related

        def cancel():  # the owner cancels while Google is making the subscription
            gmeet.while_creating = None
            as_read = MeetingSubscription.objects.select_related("meeting__owner").get(meeting=meeting)
            assert not as_read.external_id

            def close_reads(*fields):
                assert fields == ("meeting__owner",)
                monkeypatch.setattr(MeetingSubscription.objects, "select_related", lookup)  # once
                return SimpleNamespace(filter=lambda pk: SimpleNamespace(first=lambda: as_read))

            monkeypatch.setattr(MeetingSubscription.objects, "select_related", close_reads)
            assert user_client.delete(f"{URL}{meeting.pk}/").json()["status"] == "cancelled"

        gmeet.while_creating = cancel
        inline(meet_subscribe.delay, meeting.pk)  # the closes queued run after it, the cancel's first
        assert gmeet.subscriptions == {}
        assert ("DELETE", "/v1/subscriptions/sub-1") in meet_requests(gmeet)
        assert MeetingSubscription.objects.get(meeting=meeting).status == "ended"

    def test_disconnecting_the_account_deletes_its_subscriptions_while_the_token_works(
        self, meeting, gmeet, records_conn, user_client
    ):
        gmeet.http.add(responses.POST, "https://oauth2.googleapis.com/revoke", status=200)
        response = user_client.delete(f"/api/v1/connections/{records_conn.pk}/")
        assert response.status_code == 200, response.content
        assert ("DELETE", "/v1/subscriptions/sub-1") in meet_requests(gmeet)
        assert MeetingSubscription.objects.get().status == "ended"

    def test_a_subscription_stored_while_the_disconnect_deletes_another_is_deleted_too_not_just_marked_ended(
        self, meeting, gmeet, records_conn, user_client
    ):
        """The disconnect deleted the first meeting's subscription at Google while a second meeting's subscribe
        task stored its own; the disconnect then marked every active row ended, that one too: the hub said it
        let it go, and it stayed at Google, delivering the meeting's events after the account was gone."""
        second = Meeting.objects.get(pk=user_client.post(URL, body("google_meet"), format="json").json()["id"])

        def subscribe_second(name):
            gmeet.while_deleting = None
            assert meet_subscribe(second.pk) == "created"

        gmeet.while_deleting = subscribe_second
        gmeet.http.add(responses.POST, "https://oauth2.googleapis.com/revoke", status=200)
        response = user_client.delete(f"/api/v1/connections/{records_conn.pk}/")
        assert response.status_code == 200, response.content
        assert gmeet.subscriptions == {}
        assert [r for r in meet_requests(gmeet) if r[0] == "DELETE"] == [
            ("DELETE", "/v1/subscriptions/sub-1"),
            ("DELETE", "/v1/subscriptions/sub-2"),
        ]
        assert set(MeetingSubscription.objects.values_list("status", flat=True)) == {"ended"}

    def test_erasure_deletes_the_users_subscriptions_at_once(self, meeting, gmeet, user, client_for, inline):
        gmeet.http.add(responses.POST, "https://oauth2.googleapis.com/revoke", status=200)
        erase = {"password": "correct horse battery staple"}
        response = inline(client_for(user).post, "/api/v1/privacy/erase/", erase, format="json")
        assert response.status_code == 202, response.content
        assert ("DELETE", "/v1/subscriptions/sub-1") in meet_requests(gmeet)
        assert MeetingSubscription.objects.get().status == "ended"


# --- Receiving ----------------------------------------------------------------------------------------


class TestPushAuthentication:
    @pytest.mark.parametrize(
        "case", ["rogue_key", "wrong_audience", "wrong_account", "unverified_email", "expired", "missing", "garbage"]
    )
    def test_a_push_without_a_good_google_token_is_403_and_stores_nothing(self, case, gmeet, meet_push_keys, client):
        signer = meet_push_keys["rogue" if case == "rogue_key" else "good"][0]
        claims = {
            "wrong_audience": {"aud": "https://other.example/push"},
            "wrong_account": {"email": "someone@evil.iam.gserviceaccount.com"},
            "unverified_email": {"email_verified": False},
            "expired": {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
        }.get(case, {})
        headers = {"missing": {}, "garbage": {"Authorization": "Bearer not.a.jwt"}}.get(
            case, {"Authorization": f"Bearer {token(signer, **claims)}"}
        )
        payload = json.dumps(delivery("conference.v2.started", {"conferenceRecord": {"name": "conferenceRecords/c1"}}))
        response = client.post(WEBHOOK, payload, content_type="application/json", headers=headers)
        assert response.status_code == 403, response.content
        assert response.json()["error"] in ("bad_signature", "missing_signature")
        assert not WebhookEvent.objects.exists()

    def test_googles_certificates_are_fetched_once_through_the_gateway(self, gmeet, meet_push_keys, push):
        for n in range(2):
            payload = delivery("conference.v2.started", {"conferenceRecord": {"name": "x"}}, ce_id=f"e{n}")
            assert push(payload, bearer=token(meet_push_keys["good"][0])).status_code == 200
        assert ProviderCall.objects.filter(provider="google_meet", operation="push.certs").count() == 1

    def test_certificates_google_does_not_serve_make_pubsub_deliver_again(self, gmeet, meet_push_keys, client):
        gmeet.http.replace(responses.GET, CERTS_URL, status=503)
        payload = json.dumps(delivery("conference.v2.started", {"conferenceRecord": {"name": "x"}}))
        headers = {"Authorization": f"Bearer {token(meet_push_keys['good'][0])}"}
        response = client.post(WEBHOOK, payload, content_type="application/json", headers=headers)
        assert response.status_code == 503 and not WebhookEvent.objects.exists()

    def test_without_the_push_settings_the_endpoint_is_503(self, gmeet, push, settings):
        settings.GOOGLE_MEET_PUSH_SERVICE_ACCOUNT = ""
        response = push(delivery("conference.v2.started", {"conferenceRecord": {"name": "x"}}))
        assert response.status_code == 503 and response.json()["error"] == "webhook_not_configured"


class TestEvents:
    def test_started_then_ended_moves_the_meeting_with_googles_times(self, meeting, gmeet, push):
        record = gmeet.conference(CODE, start="2030-01-10T15:00:07Z", end="2030-01-10T15:44:00Z")
        data = {"conferenceRecord": {"name": record}}
        assert (
            push(delivery("conference.v2.started", data, ce_id="e1", ce_time="2030-01-10T15:00:08Z")).status_code == 200
        )
        meeting.refresh_from_db()
        assert meeting.status == "started" and meeting.started_at == dt.datetime(2030, 1, 10, 15, 0, 7, tzinfo=dt.UTC)
        assert (
            push(delivery("conference.v2.ended", data, ce_id="e2", ce_time="2030-01-10T15:44:01Z")).status_code == 200
        )
        meeting.refresh_from_db()
        assert meeting.status == "ended" and meeting.ended_at == dt.datetime(2030, 1, 10, 15, 44, tzinfo=dt.UTC)
        assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
        assert ProviderCall.objects.filter(operation="conferenceRecords.get").count() == 2

    def test_a_late_started_never_reopens_an_ended_meeting(self, meeting, gmeet, push):
        record = gmeet.conference(CODE, end="2030-01-10T15:44:00Z")
        data = {"conferenceRecord": {"name": record}}
        push(delivery("conference.v2.ended", data, ce_id="e2", ce_time="2030-01-10T15:44:01Z"))
        push(delivery("conference.v2.started", data, ce_id="e1", ce_time="2030-01-10T15:00:08Z"))
        meeting.refresh_from_db()
        assert meeting.status == "ended"

    def test_joined_and_left_out_of_order_and_twice_make_one_attendance_stretch(self, meeting, gmeet, push):
        record = gmeet.conference(CODE)
        session = gmeet.session(record, start="2030-01-10T15:01:00Z", end="2030-01-10T15:30:00Z")
        data = {"participantSession": {"name": session}}
        left = delivery("participant.v2.left", data, ce_id="left-1", ce_time="2030-01-10T15:30:01Z")
        joined = delivery("participant.v2.joined", data, ce_id="join-1", ce_time="2030-01-10T15:01:01Z")
        assert push(left).json()["status"] == "received"
        assert push(joined).json()["status"] == "received"
        assert push(joined).json()["status"] == "duplicate"  # Pub/Sub delivered it again
        again = delivery("participant.v2.joined", data, ce_id="join-1-republished", ce_time="2030-01-10T15:01:01Z")
        push(again)
        [row] = MeetingAttendance.objects.filter(meeting=meeting)
        assert row.participant_key == f"{record}/participants/p1" and row.name == "Ana Lima"
        assert row.joined_at == dt.datetime(2030, 1, 10, 15, 1, tzinfo=dt.UTC)
        assert row.left_at == dt.datetime(2030, 1, 10, 15, 30, tzinfo=dt.UTC)

    def test_a_dial_in_guest_and_a_rejoin_each_count(self, meeting, gmeet, push):
        record = gmeet.conference(CODE)
        phone = {"phoneUser": {"displayName": "+1 650-***-**01"}}
        first = gmeet.session(record, person="p2", session="s1", start="2030-01-10T15:02:00Z", who=phone)
        second = gmeet.session(record, person="p2", session="s2", start="2030-01-10T15:20:00Z", who=phone)
        push(delivery("participant.v2.joined", {"participantSession": {"name": first}}, ce_id="a"))
        push(delivery("participant.v2.joined", {"participantSession": {"name": second}}, ce_id="b"))
        rows = list(MeetingAttendance.objects.filter(meeting=meeting).values_list("name", "joined_at"))
        assert [name for name, _ in rows] == ["+1 650-***-**01"] * 2 and rows[0][1] < rows[1][1]

    def test_a_generated_recording_is_booked_with_its_drive_link(self, meeting, gmeet, push, user_client):
        record = gmeet.conference(CODE)
        name = gmeet.recording(record)
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec"))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec-again"))
        recording = MeetingRecording.objects.get(meeting=meeting)
        assert recording.external_id == name and recording.file_type == "MP4"
        assert recording.download_url == "https://www.googleapis.com/drive/v3/files/1AbC?alt=media"
        assert recording.recording_start == dt.datetime(2030, 1, 10, 15, tzinfo=dt.UTC)
        listed = user_client.get(f"{URL}{meeting.pk}/recordings/")
        assert listed.status_code == 200

    def test_an_event_for_a_space_the_hub_does_not_watch_is_stored_and_ignored(self, meeting, gmeet, push):
        before = len(gmeet.requests)
        payload = delivery(
            "conference.v2.started",
            {"conferenceRecord": {"name": "conferenceRecords/elsewhere"}},
            source="//workspaceevents.googleapis.com/subscriptions/not-ours",
            subject="//meet.googleapis.com/spaces/not-ours",
        )
        assert push(payload).status_code == 200
        assert WebhookEvent.objects.get().status == "ignored"
        assert len(gmeet.requests) == before
        meeting.refresh_from_db()
        assert meeting.status == "scheduled"

    def test_an_expiration_reminder_renews_the_subscription(self, meeting, gmeet, push):
        payload = delivery("x", {"subscription": {"name": "subscriptions/sub-1"}}, subject=SOURCE, ce_id="rem")
        payload["message"]["attributes"]["ce-type"] = "google.workspace.events.subscription.v1.expirationReminder"
        assert push(payload).status_code == 200
        assert ("PATCH", "/v1/subscriptions/sub-1") in meet_requests(gmeet)


def suspended(gmeet, reason, *, ce_id="susp"):
    """Google suspends sub-1 for `reason` and says so in a lifecycle event."""
    data = {"subscription": gmeet.suspend("subscriptions/sub-1", reason)}
    payload = delivery("x", data, subject=SOURCE, ce_id=ce_id)
    payload["message"]["attributes"]["ce-type"] = "google.workspace.events.subscription.v1.suspended"
    return payload


class TestSuspension:
    """Google suspends a subscription for a reason (Subscription.suspensionReason): the hub reactivates what it can
    cure, names what only the owner can, and lets go of one whose meeting space is gone."""

    @pytest.fixture
    def few_retries(self, settings):
        retry = {"base": 0.01, "cap": 0.01, "max_retries": 2}
        settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "google_meet": retry}

    @pytest.mark.parametrize(
        "reason", ["ENDPOINT_PERMISSION_DENIED", "ENDPOINT_NOT_FOUND", "ENDPOINT_RESOURCE_EXHAUSTED", "OTHER"]
    )
    def test_a_suspension_the_hub_can_cure_is_reactivated(self, reason, meeting, gmeet, push, user):
        assert push(suspended(gmeet, reason)).status_code == 200
        assert meet_requests(gmeet)[-2:] == [
            ("GET", "/v1/subscriptions/sub-1"),
            ("POST", "/v1/subscriptions/sub-1:reactivate"),
        ]
        sub = MeetingSubscription.objects.get()
        assert (sub.status, sub.last_error, sub.external_id) == ("active", "", "subscriptions/sub-1")
        assert gmeet.subscriptions["subscriptions/sub-1"]["state"] == "ACTIVE"
        [call] = ProviderCall.objects.filter(provider="google_meet", operation="subscriptions.reactivate")
        assert (call.owner, call.outcome) == (user, "ok")

    def test_a_reactivation_google_refuses_is_retried_with_backoff_then_left_failed_naming_why(
        self, meeting, gmeet, push, few_retries
    ):
        gmeet.refuse_reactivation = 99  # the topic stays broken
        push(suspended(gmeet, "ENDPOINT_NOT_FOUND"))
        reactivations = [r for r in meet_requests(gmeet) if r[1].endswith(":reactivate")]
        assert len(reactivations) == 3  # the first attempt and the policy's two retries, no more
        sub = MeetingSubscription.objects.get()
        assert sub.status == "failed" and "ENDPOINT_NOT_FOUND" in sub.last_error
        assert "GOOGLE_MEET_EVENTS_TOPIC" in sub.last_error and "reactivate" in sub.last_error
        calls = ProviderCall.objects.filter(provider="google_meet", operation="subscriptions.reactivate")
        assert [c.http_status for c in calls] == [400] * 3

    def test_a_refusal_that_passes_is_reactivated_on_a_retry(self, meeting, gmeet, push, few_retries):
        gmeet.refuse_reactivation = 1
        push(suspended(gmeet, "ENDPOINT_RESOURCE_EXHAUSTED"))
        sub = MeetingSubscription.objects.get()
        assert (sub.status, sub.last_error) == ("active", "")
        assert len([r for r in meet_requests(gmeet) if r[1].endswith(":reactivate")]) == 2

    def test_a_subscription_google_suspends_again_and_again_is_left_failed(self, meeting, gmeet, push):
        for n in range(3):
            push(suspended(gmeet, "OTHER", ce_id=f"susp-{n}"))
            assert MeetingSubscription.objects.get().status == "active"
        push(suspended(gmeet, "OTHER", ce_id="susp-3"))
        sub = MeetingSubscription.objects.get()
        assert sub.status == "failed" and "OTHER" in sub.last_error and "3 times" in sub.last_error
        assert len([r for r in meet_requests(gmeet) if r[1].endswith(":reactivate")]) == 3

    def test_staff_retry_one_the_hub_gave_up_on_once_the_topic_is_put_right(
        self, meeting, gmeet, push, admin_client, user_client, inline
    ):
        """Past its reactivations the subscription stayed failed for good: nothing (no owner reconnect, no sweep,
        no admin action) ever tried it again, so the meeting had no lifecycle events after the topic was fixed."""
        for n in range(4):
            push(suspended(gmeet, "ENDPOINT_PERMISSION_DENIED", ce_id=f"susp-{n}"))
        sub = MeetingSubscription.objects.get()
        assert sub.status == "failed" and "retry the subscription in admin" in sub.last_error
        changelist = "/admin/scheduling/meetingsubscription/"
        # The owner cannot; staff can, and the subscription is reactivated with a fresh budget.
        assert (
            user_client.post(changelist, {"action": "retry_subscriptions", "_selected_action": [sub.pk]}).status_code
            == 302
        )
        assert MeetingSubscription.objects.get().status == "failed"
        answer = inline(admin_client.post, changelist, {"action": "retry_subscriptions", "_selected_action": [sub.pk]})
        assert answer.status_code == 302
        sub.refresh_from_db()
        assert (sub.status, sub.last_error, sub.raw["hub_reactivations"]) == ("active", "", 1)
        assert len([r for r in meet_requests(gmeet) if r[1].endswith(":reactivate")]) == 4
        # Google suspends it again: the hub reactivates it itself again.
        push(suspended(gmeet, "ENDPOINT_PERMISSION_DENIED", ce_id="susp-after-retry"))
        assert MeetingSubscription.objects.get().status == "active"
        # An active one is not retried: staff see why.
        page = inline(
            admin_client.post, changelist, {"action": "retry_subscriptions", "_selected_action": [sub.pk]}, follow=True
        )
        assert "Only a failed Google Meet subscription can be retried" in page.content.decode()

    @pytest.mark.parametrize(
        ("reason", "says"),
        [
            ("USER_SCOPE_REVOKED", "withdrew the hub's access to Google Meet"),
            ("USER_AUTHORIZATION_FAILURE", "no longer has access to this meeting's space"),
        ],
    )
    def test_a_suspension_only_the_owner_can_cure_names_the_reason_and_what_to_do(
        self, reason, says, meeting, gmeet, push
    ):
        push(suspended(gmeet, reason))
        sub = MeetingSubscription.objects.get()
        assert sub.status == "failed" and reason in sub.last_error and says in sub.last_error
        assert "connect Google again" in sub.last_error
        assert not [r for r in meet_requests(gmeet) if r[1].endswith(":reactivate")]

    def test_a_deleted_meeting_space_ends_the_subscription_quietly_for_good(self, meeting, gmeet, push, inline):
        push(suspended(gmeet, "RESOURCE_DELETED"))
        sub = MeetingSubscription.objects.get()
        assert (sub.status, sub.last_error) == ("ended", "")
        before = len(gmeet.requests)
        inline(meet_subscriptions_due.delay)  # the sweep does not subscribe the meeting again: its space is gone
        inline(meet_subscribe.delay, meeting.pk)
        assert len(gmeet.requests) == before
        assert MeetingSubscription.objects.get().status == "ended"

    def test_the_reason_is_read_as_googles_lifecycle_guide_spells_it_too(self, meeting, gmeet, push):
        payload = suspended(gmeet, "USER_AUTHORIZATION_FAILURE")
        data = {"subscription": {"name": "subscriptions/sub-1", "suspension_reason": "USER_AUTHORIZATION_FAILURE"}}
        payload["message"]["data"] = base64.b64encode(json.dumps(data).encode()).decode()
        push(payload)
        sub = MeetingSubscription.objects.get()
        assert sub.status == "failed" and "USER_AUTHORIZATION_FAILURE" in sub.last_error
        assert sub.raw["suspensionReason"] == "USER_AUTHORIZATION_FAILURE"

    def test_a_suspension_found_on_renewal_is_reactivated(self, meeting, gmeet, inline):
        gmeet.suspend("subscriptions/sub-1", "ENDPOINT_PERMISSION_DENIED")  # no lifecycle event reached the hub
        MeetingSubscription.objects.update(expires_at=timezone.now() + dt.timedelta(hours=2))
        inline(meet_subscriptions_due.delay)
        assert ("POST", "/v1/subscriptions/sub-1:reactivate") in meet_requests(gmeet)
        assert MeetingSubscription.objects.get().status == "active"

    @pytest.mark.parametrize(
        ("reason", "before"),
        [
            # Google refused the revoked grant's refresh token: the connection needs authorization.
            ("USER_SCOPE_REVOKED", "needs_reauth"),
            # The owner lost access to the space; their tokens kept working, so the connection stayed active and
            # only a re-consent (start and callback, as any authorization) says the access is back.
            ("USER_AUTHORIZATION_FAILURE", "active"),
        ],
    )
    def test_authorizing_google_again_reactivates_what_the_owners_grant_suspended(
        self, meeting, gmeet, push, records_conn, user_client, inline, reason, before
    ):
        push(suspended(gmeet, reason))
        assert MeetingSubscription.objects.get().status == "failed"
        Connection.objects.filter(pk=records_conn.pk).update(status=before)
        started = user_client.post(
            "/api/v1/connections/google/start/",
            {"capabilities": ["meetings", "meeting_records"], "connection": records_conn.pk},
            format="json",
        )
        assert started.status_code == 200, started.content
        gmeet.token = "ya29.granted-again"
        granted = {
            "access_token": gmeet.token,
            "expires_in": 3599,
            "refresh_token": "1//granted-again",
            "scope": " ".join(records_conn.scopes),
            "token_type": "Bearer",
            "id_token": google_id_token(),
        }
        gmeet.http.add(responses.POST, GOOGLE_TOKEN_URL, json=granted)
        state = query(started.json()["authorization_url"])["state"]
        answer = inline(user_client.get, "/api/v1/connections/google/callback/", {"state": state, "code": "c2"})
        assert answer.status_code == 200, answer.content
        assert ("POST", "/v1/subscriptions/sub-1:reactivate") in meet_requests(gmeet)
        sub = MeetingSubscription.objects.get()
        assert (sub.status, sub.last_error) == ("active", "")


# --- Recording copies: Meet's files in Google Drive ---------------------------------------------------------


def _versions(s3):
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix="recordings/")
    return [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]


class TestRecordingCopies:
    """With the owner's opt-in a Meet recording is copied from the organizer's Drive (drive.meet.readonly)."""

    # s3 (moto) is started before the Meet fixtures: its own requests mock would otherwise hide the push certificates.

    @pytest.fixture
    def drive_granted(self, records_conn):
        records_conn.scopes += [DRIVE_MEET_READONLY]
        records_conn.save()
        return records_conn

    @pytest.fixture
    def opted_in(self, user):
        return SchedulingPreference.objects.create(owner=user, copy_recordings=True)

    def test_a_generated_recording_is_copied_from_drive_to_s3(
        self, s3, meeting, drive_granted, opted_in, gmeet, drive, push, user
    ):
        name = gmeet.recording(gmeet.conference(CODE))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec"))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec-again"))

        recording = MeetingRecording.objects.get(meeting=meeting)
        assert recording.copy_status == "copied" and recording.copy_error == ""
        assert recording.stored_bytes == len(MP4) and recording.storage_key.startswith(f"recordings/{user.pk}/")
        stored = s3.get_object(Bucket=BUCKET, Key=recording.storage_key)
        assert stored["Body"].read() == MP4 and stored["ContentType"] == "video/mp4"
        assert len(_versions(s3)) == 1
        [request] = drive.requests  # Google sent the event twice: downloaded once
        assert str(request.url) == f"{DRIVE}/files/1AbC?alt=media"
        [call] = ProviderCall.objects.filter(provider="google_meet", operation="recording.download")
        assert (call.owner, call.outcome, call.http_status) == (user, "ok", 200)
        assert call.units["bytes_out"] == len(MP4)
        assert ProviderCall.objects.get(provider="s3", operation="put").units["bytes_in"] == len(MP4)

    def test_a_transcript_is_copied_as_the_text_of_its_google_doc(
        self, s3, meeting, drive_granted, opted_in, gmeet, drive, push
    ):
        name = gmeet.transcript(gmeet.conference(CODE))
        push(delivery("transcript.v2.fileGenerated", {"transcript": {"name": name}}, ce_id="tr"))

        transcript = MeetingRecording.objects.get(meeting=meeting)
        assert (transcript.recording_type, transcript.file_type, transcript.copy_status) == (
            "transcript",
            "TXT",
            "copied",
        )
        stored = s3.get_object(Bucket=BUCKET, Key=transcript.storage_key)
        assert stored["Body"].read() == drive.docs["1DoC"].encode() and stored["ContentType"] == "text/plain"
        [request] = drive.requests
        assert request.url.path == "/drive/v3/files/1DoC/export" and request.url.params["mimeType"] == "text/plain"
        assert ProviderCall.objects.filter(provider="google_meet", operation="transcript.export").count() == 1

    def test_a_connection_granted_before_the_drive_scope_fails_the_copy_naming_it(
        self, s3, meeting, records_conn, opted_in, gmeet, drive, push
    ):
        name = gmeet.recording(gmeet.conference(CODE))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec"))

        recording = MeetingRecording.objects.get(meeting=meeting)  # booked: listing needs only the Meet scope
        assert recording.copy_status == "failed" and DRIVE_MEET_READONLY in recording.copy_error
        assert "meeting_records" in recording.copy_error
        assert drive.requests == [] and _versions(s3) == []
        assert not ProviderCall.objects.filter(provider__in=["s3", "google_meet"], operation="recording.download")

    def test_a_token_google_says_lacks_the_scope_fails_the_copy_for_good(
        self, s3, meeting, drive_granted, opted_in, gmeet, drive, push
    ):
        drive.fail.append(insufficient_scope())
        name = gmeet.recording(gmeet.conference(CODE))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec"))

        recording = MeetingRecording.objects.get(meeting=meeting)
        assert recording.copy_status == "failed" and DRIVE_MEET_READONLY in recording.copy_error
        assert len(drive.requests) == 1 and _versions(s3) == []  # permanent: not retried
        call = ProviderCall.objects.get(provider="google_meet", operation="recording.download")
        assert (call.http_status, call.error_code, call.retryable) == (403, "insufficient_scope", False)

    def test_a_file_gone_from_drive_fails_the_copy_with_the_reason(
        self, s3, meeting, drive_granted, opted_in, gmeet, drive, push
    ):
        del drive.files["1AbC"]
        name = gmeet.recording(gmeet.conference(CODE))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec"))

        recording = MeetingRecording.objects.get(meeting=meeting)
        assert recording.copy_status == "failed" and "gone from Google Drive" in recording.copy_error
        assert recording.next_attempt_at is None and _versions(s3) == []
        assert len(drive.requests) == 1
        assert ProviderCall.objects.get(provider="google_meet", operation="recording.download").retryable is False

    def test_the_hub_link_streams_the_recording_from_drive(
        self, meeting, drive_granted, gmeet, drive, push, api_client
    ):
        name = gmeet.recording(gmeet.conference(CODE))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec"))
        recording = MeetingRecording.objects.get(meeting=meeting)
        assert recording.copy_status == "none"  # no opt-in: the link goes to Drive each time

        response = api_client.get(f"/api/v1/scheduling/recording-links/{recording_link_token(recording)}/")

        assert response.status_code == 200 and response["Content-Type"] == "video/mp4"
        assert b"".join(response.streaming_content) == MP4
        assert response["Content-Disposition"] == f'attachment; filename="recording-{recording.pk}.mp4"'
        assert ProviderCall.objects.filter(provider="google_meet", operation="recording.download").count() == 1

    def test_a_recording_booked_with_its_browser_link_is_still_served_from_drive(
        self, meeting, drive_granted, gmeet, drive, push, api_client
    ):
        name = gmeet.recording(gmeet.conference(CODE))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec"))
        # what rows booked before the hub downloaded Meet files hold: Meet's exportUri
        MeetingRecording.objects.update(download_url="https://drive.google.com/file/d/1AbC/view")

        token = recording_link_token(MeetingRecording.objects.get(meeting=meeting))
        response = api_client.get(f"/api/v1/scheduling/recording-links/{token}/")

        assert response.status_code == 200 and b"".join(response.streaming_content) == MP4
        [request] = drive.requests
        assert str(request.url) == f"{DRIVE}/files/1AbC?alt=media"

    @pytest.mark.parametrize(
        ("status", "answer"), [(429, (503, "provider_rate_limited")), (503, (502, "provider_unavailable"))]
    )
    def test_a_busy_drive_is_a_retryable_failure_of_the_link(
        self, status, answer, meeting, drive_granted, gmeet, drive, push, api_client
    ):
        name = gmeet.recording(gmeet.conference(CODE))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec"))
        drive.fail.append(httpx.Response(status, json={"error": {"code": status, "message": "Backend Error"}}))

        token = recording_link_token(MeetingRecording.objects.get(meeting=meeting))
        response = api_client.get(f"/api/v1/scheduling/recording-links/{token}/")

        assert (response.status_code, response.json()["error"]) == answer and "Retry-After" in response
        assert ProviderCall.objects.get(provider="google_meet", operation="recording.download").retryable is True

    def test_without_the_drive_scope_the_hub_link_answers_403_naming_it(
        self, meeting, records_conn, gmeet, drive, push, api_client
    ):
        name = gmeet.recording(gmeet.conference(CODE))
        push(delivery("recording.v2.fileGenerated", {"recording": {"name": name}}, ce_id="rec"))

        token = recording_link_token(MeetingRecording.objects.get(meeting=meeting))
        response = api_client.get(f"/api/v1/scheduling/recording-links/{token}/")

        assert response.status_code == 403 and response.json()["error"] == "missing_scope"
        assert response.json()["missing_scopes"] == [DRIVE_MEET_READONLY] and drive.requests == []


class TestReconcile:
    """The hourly sweep reads the spaces of meetings that may have met, so a lost event message loses nothing."""

    def test_a_meeting_whose_event_messages_were_lost_is_caught_up_by_the_sweep(self, meeting, gmeet, inline):
        record = gmeet.conference(CODE, start="2030-01-10T15:00:07Z", end="2030-01-10T15:44:00Z")
        gmeet.session(record, start="2030-01-10T15:01:00Z", end="2030-01-10T15:30:00Z")
        gmeet.session(
            record, person="p2", start="2030-01-10T15:05:00Z", who={"anonymousUser": {"displayName": "Guest"}}
        )
        gmeet.record(CODE)  # a recording and a transcript in Drive
        Meeting.objects.filter(pk=meeting.pk).update(start_time=timezone.now() - dt.timedelta(hours=1))
        inline(meet_subscriptions_due.delay)
        meeting.refresh_from_db()
        assert meeting.status == "ended" and meeting.ended_at == dt.datetime(2030, 1, 10, 15, 44, tzinfo=dt.UTC)
        assert sorted(MeetingAttendance.objects.values_list("name", flat=True)) == ["Ana Lima", "Guest"]
        assert sorted(MeetingRecording.objects.values_list("recording_type", flat=True)) == ["recording", "transcript"]
        listing = next(r for r in gmeet.requests if r["path"] == "/v2/conferenceRecords")
        assert listing["params"]["filter"] == f'space.name = "spaces/sp-{CODE}"'

    def test_the_sweep_undoes_nothing_a_newer_event_applied(self, meeting, gmeet, push, inline):
        record = gmeet.conference(CODE, start="2030-01-10T15:00:07Z")
        data = {"conferenceRecord": {"name": record}}
        push(delivery("conference.v2.started", data, ce_id="e1", ce_time="2030-01-10T15:00:08Z"))
        gmeet.resources[record]["endTime"] = "2030-01-10T15:44:00Z"
        push(delivery("conference.v2.ended", data, ce_id="e2", ce_time="2030-01-10T15:44:01Z"))
        Meeting.objects.filter(pk=meeting.pk).update(start_time=timezone.now() - dt.timedelta(hours=1))
        inline(meet_subscriptions_due.delay)
        meeting.refresh_from_db()
        assert meeting.status == "ended" and meeting.last_event_at == dt.datetime(2030, 1, 10, 15, 44, 1, tzinfo=dt.UTC)

    def test_a_meeting_that_has_not_begun_is_not_read(self, meeting, gmeet, inline):
        inline(meet_subscriptions_due.delay)
        assert not [r for r in gmeet.requests if r["path"] == "/v2/conferenceRecords"]
