"""Teams meeting lifecycle: Graph subscriptions per meeting, recordings booked from notifications, attendance
from the attendance report. Graph is the fake at httpx's transport; tasks run inline."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from integrations.models import ProviderCall, WebhookEvent
from scheduling import tasks
from scheduling.models import Meeting, MeetingAttendance, MeetingRecording, MeetingSubscription
from scheduling.teams_lifecycle import meeting_cancelled

from ..factories import UserFactory
from ..privacy.conftest import BUCKET
from .fakes import GRAPH
from .helpers import URL, body, committed_now

pytestmark = pytest.mark.django_db
HOOK = "/webhooks/teams/"
APP_URL = "https://hub.example.com"
LIFECYCLE_SCOPES = ["OnlineMeetingRecording.Read.All", "OnlineMeetingTranscript.Read.All", "OnlineMeetingArtifact.Read.All"]  # fmt: skip


@pytest.fixture
def hub(settings, eager):
    settings.APP_URL = APP_URL
    return settings


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Work queued on commit (the beat's renewals, a cancel's unsubscribe) runs when the block ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def granted(teams_conn):
    teams_conn.scopes += LIFECYCLE_SCOPES
    teams_conn.capabilities += ["meeting_records", "meeting_attendance"]
    teams_conn.save()
    return teams_conn


@pytest.fixture
def create(user_client, django_capture_on_commit_callbacks):
    def make(**extra):
        with django_capture_on_commit_callbacks(execute=True):
            response = user_client.post(URL, body("teams", **extra), format="json")
        assert response.status_code == 201, response.json()
        return Meeting.objects.get(pk=response.json()["id"])

    return make


@pytest.fixture
def notify(client, django_capture_on_commit_callbacks):
    def send(meeting, kind="recordings", artifact_id=None, *, client_state=None, change="created", lifecycle=None):
        sub = MeetingSubscription.objects.get(meeting=meeting, kind=f"graph_{kind}")
        oid = meeting.external_uuid
        item = {
            "subscriptionId": sub.external_id,
            "clientState": sub.client_state if client_state is None else client_state,
            "subscriptionExpirationDateTime": "2030-01-12T10:00:00+00:00",
            "tenantId": "2432b57b-0abd-43db-aa7b-16eadd115d34",
        }
        if lifecycle:
            item["lifecycleEvent"] = lifecycle
        else:
            item["changeType"] = change
            item["resource"] = f"communications/onlineMeetings('{oid}')/{kind}('{artifact_id}')"
            item["resourceData"] = {
                "id": artifact_id,
                "@odata.type": f"#Microsoft.Graph.call{kind[:-1].title()}",
                "@odata.id": item["resource"],
            }
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(HOOK, json.dumps({"value": [item]}), content_type="application/json")

    return send


def _ops(*names):
    return list(
        ProviderCall.objects.filter(provider="teams", operation__in=names)
        .order_by("pk")
        .values_list("operation", flat=True)
    )


def _report(rid, start, end, records):
    return {"id": rid, "meetingStartDateTime": start, "meetingEndDateTime": end, "totalParticipantCount": len(records),
            "attendanceRecords": records}  # fmt: skip


def _person(oid, name, email, *intervals):
    return {
        "emailAddress": email,
        "identity": {"id": oid, "displayName": name},
        "role": "Attendee",
        "attendanceIntervals": [
            {"joinDateTime": j, "leaveDateTime": left, "durationInSeconds": 0} for j, left in intervals
        ],
    }


# --- Subscriptions ---------------------------------------------------------------------------------------


def test_a_new_teams_meeting_is_subscribed_for_its_recordings_and_transcripts(hub, granted, graph, create):
    meeting = create()
    subs = {s.kind: s for s in MeetingSubscription.objects.filter(meeting=meeting)}
    assert set(subs) == {"graph_recordings", "graph_transcripts"}
    for kind, collection in (("graph_recordings", "recordings"), ("graph_transcripts", "transcripts")):
        sub = subs[kind]
        at_graph = graph.subscriptions[sub.external_id]
        assert at_graph["resource"] == f"communications/onlineMeetings/{meeting.external_uuid}/{collection}"
        assert at_graph["changeType"] == "created"
        assert at_graph["notificationUrl"] == at_graph["lifecycleNotificationUrl"] == f"{APP_URL}{HOOK}"
        assert at_graph["clientState"] == sub.client_state and len(sub.client_state) >= 32
        assert sub.status == "active" and sub.provider == "teams" and sub.expires_at > timezone.now()
    assert subs["graph_recordings"].client_state != subs["graph_transcripts"].client_state
    # one gateway attempt (one ProviderCall) per subscription, on the owner's account
    assert _ops("subscription.create") == ["subscription.create"] * 2


def test_without_the_recordings_grant_nothing_is_subscribed(hub, teams_conn, graph, create):
    create()
    assert not MeetingSubscription.objects.exists() and graph.subscriptions == {}
    assert _ops("subscription.create") == []


def test_a_grant_given_after_the_meeting_was_made_subscribes_it_at_the_next_beat(
    hub, teams_conn, graph, create, committed
):
    meeting = create()
    assert not MeetingSubscription.objects.exists()
    teams_conn.scopes += ["OnlineMeetingRecording.Read.All"]
    teams_conn.capabilities += ["meeting_records"]
    teams_conn.save()
    with committed():
        assert tasks.teams_subscriptions_renew_due() == {"renew": 0, "new": 1, "ended": 0}
    [sub] = MeetingSubscription.objects.filter(meeting=meeting)
    assert sub.kind == "graph_recordings" and sub.external_id in graph.subscriptions
    with committed():
        assert tasks.teams_subscriptions_renew_due() == {"renew": 0, "new": 0, "ended": 0}


def test_without_a_public_https_address_nothing_is_subscribed(hub, granted, graph, create):
    hub.APP_URL = "http://127.0.0.1:8000"
    create()
    assert not MeetingSubscription.objects.exists() and graph.subscriptions == {}


def test_a_refusal_from_graph_is_kept_on_the_row_and_not_retried(hub, granted, graph, create, committed, admin_client):
    """A refused kind waits for staff whatever became of its siblings. It was made again by every run of its
    meeting's subscribe task (the beat's renewal of an active sibling, a lifecycle notification) while a sibling was
    active, and never when every kind had failed: one rule for both, the one Google Meet's have."""
    meeting = create()
    MeetingSubscription.objects.all().delete()
    graph.fail_next.append((403, {"error": {"code": "Forbidden", "message": "no Teams licence"}}, {}))
    tasks.teams_subscribe_task.delay(meeting.pk)
    failed = MeetingSubscription.objects.get(meeting=meeting, kind="graph_recordings")
    assert failed.status == "failed" and "no Teams licence" in failed.last_error and not failed.external_id
    sibling = MeetingSubscription.objects.get(meeting=meeting, kind="graph_transcripts")
    assert sibling.status == "active"
    # The sibling's renewal (the beat) and a lifecycle notification renew the sibling and leave the refused one.
    MeetingSubscription.objects.filter(pk=sibling.pk).update(expires_at=timezone.now() + dt.timedelta(hours=2))
    with committed():
        assert tasks.teams_subscriptions_renew_due() == {"renew": 1, "new": 0, "ended": 0}
    tasks.teams_subscribe_task.delay(meeting.pk)
    # Two made with the meeting, the sibling made again (Graph refused the other's run at its first request), then
    # two renewals, and no create of the refused kind.
    assert _ops("subscription.create", "subscription.renew") == ["subscription.create"] * 3 + ["subscription.renew"] * 2
    assert MeetingSubscription.objects.get(pk=failed.pk).status == "failed"
    assert MeetingSubscription.objects.get(pk=sibling.pk).expires_at > timezone.now() + dt.timedelta(hours=24)
    # Staff retry it once the licence is assigned; that run makes it (and renews the sibling).
    with committed():
        assert admin_client.post(SUBSCRIPTIONS_ADMIN, _retry([failed])).status_code == 302
    again = MeetingSubscription.objects.get(pk=failed.pk)
    assert again.status == "active" and again.external_id in graph.subscriptions and again.last_error == ""


REFUSED = (403, {"error": {"code": "Forbidden", "message": "no Teams licence"}}, {})
SUBSCRIPTIONS_ADMIN = "/admin/scheduling/meetingsubscription/"


def _retry(rows):
    return {"action": "retry_subscriptions", "_selected_action": [row.pk for row in rows]}


def test_staff_retry_the_subscriptions_graph_refused_once_the_cause_is_put_right(
    hub, granted, graph, create, committed, admin_client, user_client
):
    """Graph refused every kind of the meeting (no Teams licence yet): the beat subscribes only kinds a meeting holds
    no row of and renews only active ones, and the admin action retried Google Meet ones alone, so nothing ever
    made them again: the meeting's recordings and transcripts were never announced."""
    meeting = create()
    MeetingSubscription.objects.all().delete()
    graph.fail_next += [REFUSED, REFUSED]
    tasks.teams_subscribe_task.delay(meeting.pk)
    failed = list(MeetingSubscription.objects.filter(meeting=meeting))
    assert [(s.kind, s.status) for s in failed] == [("graph_recordings", "failed"), ("graph_transcripts", "failed")]
    with committed():
        assert tasks.teams_subscriptions_renew_due() == {"renew": 0, "new": 0, "ended": 0}
    # The licence is assigned. The owner cannot retry (the admin sends them to log in); staff can.
    assert user_client.post(SUBSCRIPTIONS_ADMIN, _retry(failed)).status_code == 302
    assert set(MeetingSubscription.objects.values_list("status", flat=True)) == {"failed"}
    with committed():
        assert admin_client.post(SUBSCRIPTIONS_ADMIN, _retry(failed)).status_code == 302
    for sub in MeetingSubscription.objects.filter(meeting=meeting):
        assert (sub.status, sub.last_error) == ("active", "") and sub.external_id in graph.subscriptions
        assert graph.subscriptions[sub.external_id]["clientState"] == sub.client_state
    assert len(graph.subscriptions) == 2
    # An active one is not retried: staff see why.
    page = admin_client.post(SUBSCRIPTIONS_ADMIN, _retry(failed[:1]), follow=True)
    assert "Only a failed Teams subscription can be retried; this one is active." in page.content.decode()


def test_staff_are_told_why_a_failed_teams_subscription_cannot_be_retried_and_nothing_is_sent(
    hub, granted, graph, create, committed, admin_client
):
    meeting = create()
    MeetingSubscription.objects.all().delete()
    graph.fail_next.append(REFUSED)
    tasks.teams_subscribe_task.delay(meeting.pk)
    failed = MeetingSubscription.objects.get(meeting=meeting, kind="graph_recordings")
    assert failed.status == "failed"
    before = len(graph.requests)

    def refusal():
        with committed():
            page = admin_client.post(SUBSCRIPTIONS_ADMIN, _retry([failed]), follow=True)
        return page.content.decode()

    granted.scopes.remove("OnlineMeetingRecording.Read.All")  # the owner withdrew the grant
    granted.save()
    assert "no longer grants what this subscription needs" in refusal()
    Meeting.objects.filter(pk=meeting.pk).update(status="cancelled")
    assert "can produce no more recordings or transcripts" in refusal()
    assert len(graph.requests) == before and MeetingSubscription.objects.get(pk=failed.pk).status == "failed"


def test_the_beat_renews_what_lapses_soon_while_the_meeting_may_still_produce_artifacts(
    hub, granted, graph, create, committed
):
    meeting = create()
    soon = timezone.now() + dt.timedelta(hours=2)
    MeetingSubscription.objects.update(expires_at=soon)
    ids = set(MeetingSubscription.objects.values_list("external_id", flat=True))
    with committed():
        assert tasks.teams_subscriptions_renew_due() == {"renew": 1, "new": 0, "ended": 0}
    for sub in MeetingSubscription.objects.filter(meeting=meeting):
        assert sub.external_id in ids and sub.expires_at > soon + dt.timedelta(hours=24)
        assert graph.subscriptions[sub.external_id]["expirationDateTime"] == sub.expires_at.isoformat()
    assert _ops("subscription.renew") == ["subscription.renew"] * 2
    assert tasks.teams_subscriptions_renew_due() == {"renew": 0, "new": 0, "ended": 0}  # nothing due any more


def test_a_subscription_graph_lost_is_made_again_on_renewal(hub, granted, graph, create):
    meeting = create()
    old = MeetingSubscription.objects.get(meeting=meeting, kind="graph_recordings")
    del graph.subscriptions[old.external_id]
    tasks.teams_subscribe_task.delay(meeting.pk)
    new = MeetingSubscription.objects.get(pk=old.pk)
    assert new.external_id != old.external_id and new.external_id in graph.subscriptions
    assert new.client_state != old.client_state and new.status == "active"


def test_long_after_the_meeting_the_beat_lets_them_lapse_and_reads_the_final_attendance(
    hub, granted, graph, create, committed
):
    meeting = create()
    Meeting.objects.filter(pk=meeting.pk).update(start_time=timezone.now() - dt.timedelta(days=5))
    MeetingSubscription.objects.update(expires_at=timezone.now() + dt.timedelta(hours=1))
    graph.attendance[meeting.external_uuid] = [
        _report("rep-1", "2030-01-10T15:00:00Z", "2030-01-10T15:40:00Z",
                [_person("u-ana", "Ana Lima", "ana@contoso.com", ("2030-01-10T15:01:00Z", "2030-01-10T15:39:00Z"))])
    ]  # fmt: skip
    with committed():
        assert tasks.teams_subscriptions_renew_due() == {"renew": 0, "new": 0, "ended": 1}
    assert set(MeetingSubscription.objects.values_list("status", flat=True)) == {"ended"}
    assert _ops("subscription.renew") == [] and MeetingAttendance.objects.get().participant_key == "u-ana"


def test_cancelling_the_meeting_deletes_its_subscriptions_at_graph(hub, granted, graph, create, user_client, committed):
    meeting = create()
    assert len(graph.subscriptions) == 2
    with committed():
        assert user_client.delete(f"{URL}{meeting.pk}/").json()["status"] == "cancelled"
    assert graph.subscriptions == {}
    assert set(MeetingSubscription.objects.values_list("status", flat=True)) == {"ended"}
    assert _ops("subscription.delete") == ["subscription.delete"] * 2
    assert tasks.teams_subscriptions_renew_due() == {"renew": 0, "new": 0, "ended": 0}


def test_a_meeting_cancelled_while_its_subscription_is_made_keeps_none_at_graph(
    hub, granted, graph, user_client, committed
):
    made = user_client.post(URL, body("teams"), format="json")  # its subscribe task is run below
    meeting = Meeting.objects.get(pk=made.json()["id"])

    def cancel():  # the owner cancels while Graph is making the first subscription
        graph.while_subscribing = None
        assert committed_now(user_client.delete, f"{URL}{meeting.pk}/").json()["status"] == "cancelled"

    graph.while_subscribing = cancel
    with committed():
        tasks.teams_subscribe_task.delay(meeting.pk)
    assert graph.subscriptions == {}
    assert list(MeetingSubscription.objects.values_list("kind", "status")) == [("graph_recordings", "ended")]
    assert _ops("subscription.create") == ["subscription.create"]  # no more made for a cancelled meeting


def test_an_unsubscribe_leaves_what_a_create_stored_meanwhile_to_the_unsubscribe_that_create_queued(
    hub, granted, graph, create, user_client, committed
):
    """A renewal whose subscription Graph had dropped was making a new one when the owner cancelled. The cancel's
    unsubscribe read the old id; while it deleted that at Graph, the renewal stored the new one on the row (as
    _store does, conditional on the old id) and, the meeting being cancelled, queued an unsubscribe of its own.
    The first then marked the row ended whatever it held, the second found nothing active to delete, and the
    new subscription stayed at Graph, delivering until it lapsed."""
    meeting = create()
    row = MeetingSubscription.objects.get(meeting=meeting, kind="graph_recordings")

    def the_renewal_stores_its_own(subscription_id):
        if subscription_id != row.external_id:
            return
        graph.while_deleting = None
        graph.subscriptions["sub-renewed"] = {**graph.subscriptions[row.external_id], "id": "sub-renewed"}
        stored = MeetingSubscription.objects.filter(pk=row.pk, external_id=row.external_id).update(
            external_id="sub-renewed", status="active"
        )
        assert stored
        meeting_cancelled(meeting)  # what the renewal does when it finds the meeting cancelled

    graph.while_deleting = the_renewal_stores_its_own
    with committed():
        assert user_client.delete(f"{URL}{meeting.pk}/").json()["status"] == "cancelled"
    assert graph.subscriptions == {}
    assert set(MeetingSubscription.objects.values_list("external_id", "status")) == {
        ("sub-renewed", "ended"),
        (MeetingSubscription.objects.get(kind="graph_transcripts").external_id, "ended"),
    }


def test_a_retry_after_a_create_that_timed_out_leaves_one_subscription_the_hub_knows(
    hub, granted, graph, user_client, committed
):
    """Graph made the recordings subscription but its answer never came: the hub recorded nothing, and the
    retry made a second one. The first, unknown to the hub, sent every notification to it (refused, no
    clientState to check) until it lapsed."""
    made = user_client.post(URL, body("teams"), format="json")  # its subscribe task is run below
    meeting = Meeting.objects.get(pk=made.json()["id"])
    # Another meeting's, at the same URL, its create still out: not this meeting's to touch.
    graph.subscriptions["sub-elsewhere"] = {
        "id": "sub-elsewhere",
        "resource": "communications/onlineMeetings/MSoOther/recordings",
        "notificationUrl": f"{APP_URL}{HOOK}",
        "_endpoint": "v1.0",
    }
    graph.lose_next = ["POST"]
    with committed():
        tasks.teams_subscribe_task.delay(meeting.pk)  # timed out, then retried (at once: eager)
    creates = ProviderCall.objects.filter(operation="subscription.create").order_by("pk")
    assert list(creates.values_list("outcome", flat=True)) == ["timeout", "ok", "ok"]
    subs = MeetingSubscription.objects.filter(meeting=meeting)
    assert sorted(graph.subscriptions) == sorted(["sub-elsewhere", *subs.values_list("external_id", flat=True)])
    for sub in subs:  # what Graph delivers for each verifies: made with the clientState the hub holds
        assert graph.subscriptions[sub.external_id]["clientState"] == sub.client_state


def test_disconnecting_the_account_deletes_them_while_its_token_works(hub, granted, graph, create, user_client):
    create()
    assert user_client.delete(f"/api/v1/connections/{granted.pk}/").status_code in (200, 204)
    assert graph.subscriptions == {}


def test_erasure_deletes_them_at_graph_at_once(hub, granted, graph, create, user_client, committed):
    create()
    with committed():
        response = user_client.post(
            "/api/v1/privacy/erase/", {"password": "correct horse battery staple"}, format="json"
        )
    assert response.status_code == 202 and graph.subscriptions == {}
    assert set(MeetingSubscription.objects.values_list("status", flat=True)) == {"ended"}


# --- Notifications -----------------------------------------------------------------------------------------


def test_graphs_validation_handshake_is_answered_and_nothing_is_stored(hub, graph, client):
    response = client.post(
        f"{HOOK}?validationToken=Validation%3A+Testing+client+application", content_type="text/plain"
    )
    assert response.status_code == 200 and response.content == b"Validation: Testing client application"
    assert response["Content-Type"].startswith("text/plain") and not WebhookEvent.objects.exists()


def test_a_wrong_client_state_is_403_and_nothing_is_stored_or_fetched(hub, granted, graph, create, notify):
    meeting = create()
    graph.record(meeting.external_uuid)
    before = len(graph.requests)
    response = notify(meeting, "recordings", f"rec-{meeting.external_uuid}", client_state="guessed-" + "x" * 60)
    assert response.status_code == 403 and response.json()["error"] == "bad_signature"
    assert not WebhookEvent.objects.exists() and not MeetingRecording.objects.exists()
    assert len(graph.requests) == before


def test_a_recording_notification_books_the_recording_with_its_metadata(hub, granted, graph, create, notify):
    meeting = create()
    oid = meeting.external_uuid
    graph.record(oid)
    assert notify(meeting, "recordings", f"rec-{oid}").status_code == 200
    rec = MeetingRecording.objects.get()
    assert (rec.meeting, rec.external_id, rec.recording_type, rec.file_type) == (
        meeting,
        f"rec-{oid}",
        "recording",
        "MP4",
    )
    assert rec.download_url == f"{GRAPH}/me/onlineMeetings/{oid}/recordings/rec-{oid}/content"
    assert rec.recording_start == dt.datetime(2030, 1, 10, 15, 1, tzinfo=dt.UTC) and rec.copy_status == "none"
    assert WebhookEvent.objects.get().status == "processed"
    assert _ops("recording.get") == ["recording.get"]


def test_duplicates_and_any_order_book_each_artifact_once(hub, granted, graph, create, notify):
    meeting = create()
    oid = meeting.external_uuid
    graph.record(oid)
    notify(meeting, "transcripts", f"tr-{oid}")  # the transcript's notice first
    notify(meeting, "recordings", f"rec-{oid}")
    notify(meeting, "recordings", f"rec-{oid}")  # Graph delivers again
    notify(meeting, "transcripts", f"tr-{oid}", change="updated")
    rows = MeetingRecording.objects.order_by("recording_type")
    assert [(r.external_id, r.recording_type) for r in rows] == [
        (f"rec-{oid}", "recording"),
        (f"tr-{oid}", "transcript"),
    ]
    assert rows[1].download_url.endswith("/content?$format=text/vtt")


def test_a_notification_for_a_recording_graph_no_longer_has_books_nothing(hub, granted, graph, create, notify):
    meeting = create()
    assert notify(meeting, "recordings", "rec-deleted-since").status_code == 200
    assert not MeetingRecording.objects.exists() and WebhookEvent.objects.get().status == "processed"


def test_with_the_opt_in_the_recording_is_copied_to_the_hubs_storage(
    hub, granted, graph, create, notify, user, user_client, s3
):
    response = user_client.patch("/api/v1/scheduling/preferences/", {"copy_recordings": True}, format="json")
    assert response.status_code == 200
    meeting = create()
    oid = meeting.external_uuid
    graph.record(oid)
    notify(meeting, "recordings", f"rec-{oid}")
    notify(meeting, "recordings", f"rec-{oid}")
    rec = MeetingRecording.objects.get()
    assert rec.copy_status == "copied" and rec.stored_bytes == 800 and rec.storage_backend == "s3"
    assert s3.get_object(Bucket=BUCKET, Key=rec.storage_key)["Body"].read() == b"TEAMSMP4" * 100
    assert ProviderCall.objects.filter(provider="s3", operation="put", owner=user).count() == 1
    assert _ops("recording.download") == ["recording.download"]


def test_lifecycle_notifications_renew_and_catch_up(hub, granted, graph, create, notify):
    meeting = create()
    oid = meeting.external_uuid
    assert notify(meeting, lifecycle="reauthorizationRequired").status_code == 200
    assert _ops("subscription.renew") == ["subscription.renew"] * 2
    graph.record(oid)
    assert notify(meeting, lifecycle="missed").status_code == 200
    assert sorted(MeetingRecording.objects.values_list("recording_type", flat=True)) == ["recording", "transcript"]


# --- Attendance --------------------------------------------------------------------------------------------


def test_the_attendance_report_fills_attendance_and_the_meetings_real_start_and_end(
    hub, granted, graph, create, notify
):
    meeting = create(participants=[{"email": "ana@contoso.com", "name": "Ana Lima"}])
    oid = meeting.external_uuid
    graph.record(oid)
    graph.attendance[oid] = [
        _report("rep-1", "2030-01-10T15:00:03.1234567Z", "2030-01-10T15:41:00Z", [
            _person("u-ana", "Ana Lima", "ana@contoso.com",
                    ("2030-01-10T15:01:00Z", "2030-01-10T15:10:00Z"), ("2030-01-10T15:12:00Z", "2030-01-10T15:40:00Z")),
            _person("guest-7", "Dial-in guest", "", ("2030-01-10T15:05:00Z", None)),
        ])
    ]  # fmt: skip
    notify(meeting, "recordings", f"rec-{oid}")  # a recording exists only after the call: the report is read
    meeting.refresh_from_db()
    assert meeting.status == "ended"
    assert meeting.started_at == dt.datetime(2030, 1, 10, 15, 0, 3, 123456, tzinfo=dt.UTC)
    assert meeting.ended_at == dt.datetime(2030, 1, 10, 15, 41, tzinfo=dt.UTC)
    rows = [
        (a.participant_key, a.joined_at.minute, a.left_at and a.left_at.minute) for a in MeetingAttendance.objects.all()
    ]
    assert rows == [("u-ana", 1, 10), ("guest-7", 5, None), ("u-ana", 12, 40)]
    ana = meeting.participants.get(email="ana@contoso.com")
    assert (ana.joined_at.minute, ana.left_at.minute) == (1, 40)
    assert _ops("attendanceReports.list", "attendanceReport.get") == ["attendanceReports.list", "attendanceReport.get"]


def test_reading_the_report_again_or_late_changes_nothing_and_only_widens(hub, granted, graph, create, notify):
    meeting = create()
    oid = meeting.external_uuid
    graph.record(oid)
    late_leave = [_person("guest-7", "Guest", "", ("2030-01-10T15:05:00Z", None))]
    graph.attendance[oid] = [_report("rep-1", "2030-01-10T15:00:00Z", "2030-01-10T15:41:00Z", late_leave)]
    notify(meeting, "recordings", f"rec-{oid}")
    graph.attendance[oid][0]["attendanceRecords"][0]["attendanceIntervals"][0]["leaveDateTime"] = "2030-01-10T15:30:00Z"
    notify(meeting, "transcripts", f"tr-{oid}")  # the transcript arrives later: the report is read again
    notify(meeting, "transcripts", f"tr-{oid}", change="updated")
    [row] = MeetingAttendance.objects.all()
    assert (row.joined_at.minute, row.left_at.minute) == (5, 30)
    # a meeting that ended is not reopened by reading its (older) start again
    meeting.refresh_from_db()
    assert meeting.status == "ended" and meeting.ended_at.minute == 41


def test_without_the_attendance_grant_the_report_is_not_read(hub, teams_conn, graph, create, notify):
    teams_conn.scopes += ["OnlineMeetingRecording.Read.All"]
    teams_conn.capabilities += ["meeting_records"]
    teams_conn.save()
    meeting = create()
    oid = meeting.external_uuid
    graph.record(oid)
    assert set(MeetingSubscription.objects.values_list("kind", flat=True)) == {"graph_recordings"}
    notify(meeting, "recordings", f"rec-{oid}")
    assert MeetingRecording.objects.count() == 1 and not MeetingAttendance.objects.exists()
    assert _ops("attendanceReports.list") == []


def test_another_users_meeting_attendance_is_404(hub, granted, graph, create, client_for):
    meeting = create()
    assert client_for(UserFactory()).get(f"{URL}{meeting.pk}/").status_code == 404


# --- What the providers endpoint says --------------------------------------------------------------------------


def test_the_providers_endpoint_tells_what_teams_can_and_cannot_do(user_client, graph):
    teams = {r["provider"]: r for r in user_client.get("/api/v1/scheduling/providers/").json()}["teams"]
    assert {"recording_webhooks", "attendance"} <= set(teams["capabilities"])
    assert "lifecycle_webhooks" not in teams["capabilities"]
    assert teams["needs_grant"]["attendance"] == "meeting_attendance"
    assert teams["not_configured"]["lifecycle_webhooks"] == [
        "MICROSOFT_APP_TENANT_ID",
        "TEAMS_CALL_EVENTS_CERTIFICATE",
        "TEAMS_CALL_EVENTS_PRIVATE_KEY",
    ]


@pytest.mark.parametrize(
    ("before", "refusal"),
    [
        # The withdrawn consent also refused the refresh token: the connection needs authorization.
        ("needs_reauth", "consent withdrawn for this app"),
        # No Teams licence: the tokens keep working, so the connection stays active. Once an admin assigns one,
        # the organizer consents again (start and callback, as any authorization) and the kind is made.
        ("active", "The user does not have a valid Teams license"),
    ],
)
def test_authorizing_microsoft_again_retries_the_kinds_graph_refused_for_the_owners_grant(
    hub, granted, graph, idp, create, user_client, django_capture_on_commit_callbacks, before, refusal
):
    """A kind Graph refused for the organizer's consent waited for staff even after the organizer authorized
    Microsoft again; Google Meet's subscriptions the owner's grant suspended are reactivated then. Now the
    reconnect makes the consent refusal again; one refused for another cause (a bad request) waits for staff.
    A re-consent of a connection that stayed active (a licence refusal never broke the tokens) did not: only a
    broken connection's return to active ran the retry."""
    from integrations.models import Connection

    from ..integrations.oauth.test_microsoft_flow import CALLBACK, start, tokens

    meeting = create()
    MeetingSubscription.objects.all().delete()
    graph.fail_next += [
        (403, {"error": {"code": "Forbidden", "message": refusal}}, {}),
        (400, {"error": {"code": "BadRequest", "message": "resource not supported"}}, {}),
    ]
    tasks.teams_subscribe_task.delay(meeting.pk)
    consent = MeetingSubscription.objects.get(meeting=meeting, kind="graph_recordings")
    other = MeetingSubscription.objects.get(meeting=meeting, kind="graph_transcripts")
    assert (consent.status, other.status) == ("failed", "failed")
    Connection.objects.filter(pk=granted.pk).update(status=before)
    creates = len(_ops("subscription.create"))

    params = start(user_client, capabilities=granted.capabilities)
    answer = tokens(params["nonce"], scope=" ".join([*granted.scopes, "openid", "profile", "offline_access"]))
    graph.token = answer["access_token"]
    idp.token_responses = [(200, answer)]
    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.get(CALLBACK, {"code": "0.CCC-code", "state": params["state"]})
    assert response.status_code == 200, response.content
    assert Connection.objects.get(pk=granted.pk).status == Connection.Status.ACTIVE

    consent.refresh_from_db()
    assert consent.status == "active" and consent.external_id in graph.subscriptions and consent.last_error == ""
    other.refresh_from_db()
    assert other.status == "failed" and "resource not supported" in other.last_error
    assert len(_ops("subscription.create")) == creates + 1  # the consent refusal's kind only
