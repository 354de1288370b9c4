"""Erasure: at once deactivated and disconnected; after the grace period nothing of the user remains,
except what the law or accounting needs, minimised and under a pseudonym; totals unchanged."""

import datetime as dt
import os
from urllib.parse import parse_qs

import pytest
import responses
import time_machine
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Sum
from django.utils import timezone

from ai.models import AiSpend, AiUsageMonthly
from integrations.audit.models import AuditEvent
from integrations.models import Alert, ApiToken, Connection, ProviderCall, UsageRollup, WebhookEvent
from messaging.models import SmsMessage
from payments.models import Invoice, Subscription
from privacy import erasure as erasure_service
from privacy.models import Erasure
from scheduling.models import Calendar, CalendarEvent, MeetingCreate, MeetingSubscription
from travel.models import PriceWatch

from .conftest import API, BUCKET, populate, stripe_cancels, twilio_media, twilio_messages

pytestmark = pytest.mark.django_db

GOOGLE_REVOKE = "https://oauth2.googleapis.com/revoke"
PASSWORD = "correct horse battery staple"
# Rows of these models may outlive the user, minimised; everything else must hold nothing of theirs.
KEPT_WITH_IDENTITY = {"audit.AuditEvent"}  # append-only security record: names the account (README "Privacy")


@pytest.fixture
def post(django_capture_on_commit_callbacks):
    def send(client, data=None):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/api/v1/privacy/erase/", data or {}, format="json")

    return send


def _twilio_deletes(http, holdings, status=204):
    twilio_messages(http, holdings.messages)
    for rec_sid, tr_sid, _ in holdings.recordings:
        http.add(responses.DELETE, f"{API}/Recordings/{rec_sid}.json", status=status)
        http.add(responses.DELETE, f"{API}/Transcriptions/{tr_sid}.json", status=status)


def _totals():
    """Accounting totals of the usage the users had (erasure's own S3 / Twilio / Google calls add rows of their own)."""
    calls = ProviderCall.objects.filter(provider="openai")
    rollups = UsageRollup.objects.filter(provider="openai")
    return {
        "calls": calls.count(),
        "call_cost": calls.aggregate(s=Sum("cost_usd"))["s"],
        "rollup_calls": rollups.aggregate(s=Sum("calls"))["s"],
        "rollup_cost": rollups.aggregate(s=Sum("cost_usd"))["s"],
        "ai_cost": AiUsageMonthly.objects.aggregate(s=Sum("cost_usd"))["s"],
        "ai_spent": AiSpend.objects.aggregate(s=Sum("spent_usd"))["s"],
        "invoiced": Invoice.objects.aggregate(s=Sum("amount"))["s"],
        "webhook_events": WebhookEvent.objects.count(),
    }


def _everything_stored_as_text(exclude=()):
    """Every row of every model, as text (what a leak check reads)."""
    for model in apps.get_models():
        if model._meta.label in exclude:
            continue
        for row in model.objects.all().values():
            yield model._meta.label, " ".join(str(v) for v in row.values())


def _all_s3_keys(s3):
    listed = s3.list_object_versions(Bucket=BUCKET)
    return {v["Key"] for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]}


def _all_files(root):
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_own_erasure_needs_the_password(post, user, client_for):
    client = client_for(user)
    assert post(client, {}).json()["error"] == "password_required"
    assert post(client, {"password": "wrong"}).json()["error"] == "password_incorrect"
    user.refresh_from_db()
    assert user.is_active and not Erasure.objects.exists()
    assert AuditEvent.objects.filter(action="privacy.erase", outcome="denied").exists()


def test_only_staff_erase_others_or_expedite(post, user, other_user, client_for):
    assert post(client_for(user), {"user": other_user.pk}).status_code == 403
    assert post(client_for(user), {"password": PASSWORD, "expedite": True}).status_code == 403


def test_at_once_the_account_is_deactivated_disconnected_and_queued_work_cancelled(post, user, client_for, http):
    holdings = populate(user, tag="now")
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    client = client_for(user)

    response = post(client, {"password": PASSWORD})

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "scheduled"
    assert dt.datetime.fromisoformat(body["scheduled_for"]) > timezone.now() + dt.timedelta(days=6)
    user.refresh_from_db()
    assert not user.is_active
    assert not ApiToken.objects.filter(user=user).exists()
    assert client.get("/api/v1/privacy/exports/").status_code == 401  # the token is gone
    assert not Connection.objects.filter(owner=user).exists()
    # the calendars synced through those connections went with them: nothing syncs them any more
    assert not Calendar.objects.filter(owner=user).exists() and not CalendarEvent.objects.exists()
    revoke = [c for c in http.calls if c.request.url == GOOGLE_REVOKE]
    assert parse_qs(revoke[0].request.body)["token"] == ["1//refresh-now"]
    assert set(SmsMessage.objects.filter(owner=user).values_list("status", flat=True)) == {"delivered", "canceled"}
    assert not PriceWatch.objects.filter(owner=user, status="active").exists()
    # the data itself waits for the grace period
    assert user.documents.count() == 2 and holdings.files
    assert AuditEvent.objects.filter(action="privacy.erase", target_id=str(user.pk)).exists()


def test_a_second_request_is_idempotent(post, user, staff_user, client_for, http):
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    first = post(client_for(staff_user), {"user": user.pk}).json()
    again = post(client_for(staff_user), {"user": user.pk})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert Erasure.objects.count() == 1


def test_nothing_of_the_user_remains_after_the_grace_period_and_totals_are_unchanged(
    post, user, other_user, staff_user, client_for, eager, s3, http, django_capture_on_commit_callbacks
):
    mine = populate(user, tag="gone")
    theirs = populate(other_user, tag="stays")
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    _twilio_deletes(http, mine)
    stripe_cancels(http, mine)
    # an export of the user's, still within its 7 days
    from privacy.exports import export_build, export_request

    export, _ = export_request(subject=user, requested_by=user)
    twilio_media(http, mine)
    export_build(export_id=export.pk)
    export_key = type(export).objects.get(pk=export.pk).storage_key
    # deleting a document version on a versioned bucket leaves versions and a delete marker behind
    key = next(iter(mine.files))
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"newer bytes of the same key")
    s3.delete_object(Bucket=BUCKET, Key=key)
    copy_key = next(k for k in mine.recording_copies if "/copy-" in k)
    s3.put_object(Bucket=BUCKET, Key=copy_key, Body=b"a second version of the copy")
    s3.delete_object(Bucket=BUCKET, Key=copy_key)
    before = _totals()
    user_id = user.pk

    erasure_id = post(client_for(user), {"password": PASSWORD}).json()["id"]
    assert erasure_service.erasure_run(erasure_id=erasure_id) is None  # not before the grace period
    with time_machine.travel(timezone.now() + dt.timedelta(days=7, minutes=1)):
        from privacy.tasks import sweep

        with django_capture_on_commit_callbacks(execute=True):
            sweep()

    row = Erasure.objects.get(pk=erasure_id)
    assert row.status == "done", row.last_error
    assert not get_user_model().objects.filter(pk=user_id).exists()
    # S3: no version and no delete marker of the user's documents or export; the other user's are there
    keys = _all_s3_keys(s3)
    assert not keys & (set(mine.files) | {export_key})
    assert set(theirs.files) <= keys
    # ... nor of their meeting recordings' copies: not one version under the user's recordings folder
    assert not {k for k in keys if k.startswith(f"recordings/{user_id}/")}
    assert set(theirs.recording_copies) <= keys
    assert row.report["providers"]["scheduling.recording_copies_deleted"] >= 2
    # Twilio: the recording and its transcription deleted through the gateway
    deleted = {c.request.url for c in http.calls if c.request.method == "DELETE"}
    rec_sid, tr_sid, _ = mine.recordings[0]
    assert {f"{API}/Recordings/{rec_sid}.json", f"{API}/Transcriptions/{tr_sid}.json"} <= deleted
    # ... and the text of the user's messages redacted in Twilio's records (the other user's untouched)
    assert set(mine.messages.values()) == {""}
    assert row.report["providers"]["twilio.message_bodies"] == {"redacted": 1}
    # Stripe: the subscription cancelled there (not only minimised here); the other user's still bills
    assert "https://api.stripe.com/v1/subscriptions/sub_gone" in deleted
    assert Subscription.objects.get(external_id="sub_gone").status == "canceled"
    assert Subscription.objects.get(external_id="sub_stays").status == "active"
    assert row.report["providers"]["stripe.subscriptions"] == {"cancelled": 1}
    # calendars, their events and the meetings' lifecycle subscriptions are gone; the other user's stay
    assert not Calendar.objects.filter(owner_id=user_id).exists()
    assert not CalendarEvent.objects.filter(calendar__owner_id=user_id).exists()
    assert not MeetingSubscription.objects.filter(meeting__owner_id=user_id).exists()
    assert Calendar.objects.filter(owner=other_user).count() == 2
    assert CalendarEvent.objects.filter(calendar__owner=other_user).count() == 2
    assert MeetingSubscription.objects.filter(meeting__owner=other_user).count() == 1
    assert row.report["apps"]["scheduling"]["counts"]["scheduling.MeetingSubscription"] == 1
    # the records of the user's creates under an Idempotency-Key, finished or not; the other user's stay
    assert not MeetingCreate.objects.filter(owner_id=user_id).exists()
    assert MeetingCreate.objects.filter(owner=other_user).count() == 2
    # no row of any model holds anything of the user (the audit trail excepted, documented)
    for label, text in _everything_stored_as_text(exclude=KEPT_WITH_IDENTITY):
        for marker in mine.markers | mine.secrets:
            assert marker not in text, f"{marker!r} survives in {label}: {text[:200]}"
    # ... while the other user's data is all there (the check can fail)
    found = " ".join(text for _, text in _everything_stored_as_text())
    assert all(m in found for m in theirs.markers - {"1//refresh-stays"})
    # no row points at the erased account any more
    for model in apps.get_models():
        for f in model._meta.concrete_fields:
            if f.is_relation and f.related_model is get_user_model() and model._meta.label not in KEPT_WITH_IDENTITY:
                assert not model.objects.filter(**{f.attname: user_id}).exists(), f"{model._meta.label}.{f.name}"
    # accounting adds up exactly as before; the kept rows belong to the pseudonym
    assert _totals() == before
    pseudonym = get_user_model().objects.get(username=row.pseudonym)
    assert not pseudonym.is_active and not pseudonym.has_usable_password() and pseudonym.email == ""
    assert ProviderCall.objects.filter(owner=pseudonym, provider="openai").count() == 3
    assert Invoice.objects.get(owner=pseudonym).description == ""
    # webhook rows kept for de-duplication, payloads redacted
    for event in mine.events:
        event.refresh_from_db()
        assert event.payload == {"redacted": f"privacy erasure of {row.pseudonym}"}
    for event in theirs.events:
        event.refresh_from_db()
        assert "redacted" not in event.payload
    # the report says what went where, without personal data
    report = str(row.report)
    assert row.report["apps"]["documents"]["counts"]["documents.Document"] == 2
    assert row.report["providers"]["twilio.recordings"] == {"deleted": 1}
    assert row.report["webhooks_redacted"] == 2
    assert not any(m in report for m in mine.markers)
    assert row.pending_refs == []


def test_a_provider_deletion_that_fails_is_retried_and_then_alerts_staff(
    post, user, staff_user, client_for, eager, http, settings
):
    settings.PRIVACY_ERASE_MAX_ATTEMPTS = 2
    mine = populate(user, tag="retry")
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    _twilio_deletes(http, mine, status=503)
    stripe_cancels(http, mine)

    erasure_id = post(client_for(staff_user), {"user": user.pk, "expedite": True}).json()["id"]

    row = Erasure.objects.get(pk=erasure_id)
    assert row.status == "retrying" and "messaging" in row.last_error
    assert row.next_attempt_at > timezone.now()
    # the rest is done; the account stays until the provider deletion succeeds
    assert "documents" in row.report["done"] and "auth" not in row.report["done"]
    assert get_user_model().objects.filter(pk=user.pk).exists()
    assert erasure_service.erasure_run(erasure_id=erasure_id, now=row.next_attempt_at) == "failed"
    alert = Alert.objects.get(dedupe_key=f"privacy_erasure:{erasure_id}", resolved_at__isnull=True)
    assert "messaging" in alert.message

    # staff fix the cause and run it again
    http.replace(responses.DELETE, f"{API}/Recordings/{mine.recordings[0][0]}.json", status=204)
    http.replace(responses.DELETE, f"{API}/Transcriptions/{mine.recordings[0][1]}.json", status=404)
    erasure_service.erasure_retry(erasure_id=erasure_id)
    erasure_service.erasure_run(erasure_id=erasure_id)
    row.refresh_from_db()
    assert row.status == "done"
    assert row.report["providers"]["twilio.transcriptions"] == {"already_gone": 1}
    assert not get_user_model().objects.filter(pk=user.pk).exists()


def test_staff_can_read_the_report(post, user, staff_user, client_for, eager, http):
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    erasure_id = post(client_for(staff_user), {"user": user.pk, "expedite": True}).json()["id"]
    body = client_for(staff_user).get(f"/api/v1/privacy/erasures/{erasure_id}/").json()
    assert body["status"] == "done" and body["report"]["finished"] is True
    outsider = get_user_model().objects.create_user("outsider", password=PASSWORD)
    assert client_for(outsider).get(f"/api/v1/privacy/erasures/{erasure_id}/").status_code == 404


def test_a_subscription_stripe_cannot_cancel_yet_keeps_the_erasure_retrying_and_the_row_the_users(
    post, user, staff_user, client_for, eager, http
):
    mine = populate(user, tag="billing")
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    _twilio_deletes(http, mine)
    stripe_cancels(http, mine, status=500)

    erasure_id = post(client_for(staff_user), {"user": user.pk, "expedite": True}).json()["id"]

    row = Erasure.objects.get(pk=erasure_id)
    assert row.status == "retrying" and "payments" in row.last_error
    sub = Subscription.objects.get(external_id="sub_billing")
    assert (sub.owner_id, sub.status) == (user.pk, "active")  # not minimised while Stripe may still bill
    assert ProviderCall.objects.filter(provider="stripe", operation="subscription.cancel", outcome="error").exists()

    # Stripe answers again: the same operation (same Idempotency-Key) goes through and the erasure finishes
    http.replace(
        responses.DELETE,
        "https://api.stripe.com/v1/subscriptions/sub_billing",
        json={"id": "sub_billing", "object": "subscription", "status": "canceled", "customer": "cus_billing"},
    )
    assert erasure_service.erasure_run(erasure_id=erasure_id, now=row.next_attempt_at) == "done"
    sub.refresh_from_db()
    assert sub.status == "canceled" and sub.owner.username == row.pseudonym
    keys = {c.request.headers["Idempotency-Key"] for c in http.calls if "subscriptions" in c.request.url}
    assert len(keys) == 1


def test_a_subscription_stripe_no_longer_has_counts_as_cancelled(post, user, staff_user, client_for, eager, http):
    mine = populate(user, tag="gone404")
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    _twilio_deletes(http, mine)
    http.add(
        responses.DELETE,
        "https://api.stripe.com/v1/subscriptions/sub_gone404",
        status=404,
        json={
            "error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such subscription"}
        },
    )

    erasure_id = post(client_for(staff_user), {"user": user.pk, "expedite": True}).json()["id"]

    row = Erasure.objects.get(pk=erasure_id)
    assert row.status == "done", row.last_error
    assert row.report["providers"]["stripe.subscriptions"] == {"already_gone": 1}
    assert Subscription.objects.get(external_id="sub_gone404").status == "canceled"


def test_without_stripe_configured_the_erasure_stops_and_tells_staff(
    post, user, staff_user, client_for, eager, http, settings
):
    settings.STRIPE_SECRET_KEY = ""
    mine = populate(user, tag="nostripe")
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    _twilio_deletes(http, mine)

    erasure_id = post(client_for(staff_user), {"user": user.pk, "expedite": True}).json()["id"]

    row = Erasure.objects.get(pk=erasure_id)
    assert row.status == "failed" and "STRIPE_SECRET_KEY" in row.last_error
    assert Alert.objects.filter(dedupe_key=f"privacy_erasure:{erasure_id}", resolved_at__isnull=True).exists()
    assert Subscription.objects.get(external_id="sub_nostripe").owner_id == user.pk


class _ProcessKilled(BaseException):
    """The web process dies here (a worker timeout, an OOM kill): nothing after it runs, no handler sees it."""


def test_a_request_killed_before_it_disconnected_is_disconnected_by_the_sweep(user, http, monkeypatch):
    """The erasure is committed and the account deactivated, then the process dies before the immediate part
    ran: the queued SMS must not go out, nor the grant stay live, for the whole grace period."""
    import dataclasses

    from privacy import registry
    from privacy.tasks import sweep
    from tests.integrations.factories import ConnectionFactory
    from tests.messaging.factories import SmsFactory
    from tests.travel.factories import WatchFactory

    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    queued = SmsFactory(owner=user, body="queued text")
    ConnectionFactory(owner=user)
    watch = WatchFactory(owner=user)
    messaging = registry.holder("messaging")

    def killed(user, report):
        raise _ProcessKilled

    monkeypatch.setitem(registry._HOLDERS, "messaging", dataclasses.replace(messaging, disconnect=killed))
    with pytest.raises(_ProcessKilled):
        erasure_service.erase_request(subject=user, requested_by=user, password=PASSWORD)
    monkeypatch.setitem(registry._HOLDERS, "messaging", messaging)  # a fresh process
    user.refresh_from_db()
    assert not user.is_active and Erasure.objects.get().status == "scheduled"

    sweep()

    queued.refresh_from_db()
    watch.refresh_from_db()
    assert queued.status == "canceled"
    assert watch.status == "cancelled"
    assert not Connection.objects.filter(owner=user).exists()
    assert Erasure.objects.get().report["disconnect_pending"] == []
