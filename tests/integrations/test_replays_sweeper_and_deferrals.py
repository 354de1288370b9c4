"""Stripe replays outside the window refused; the sweeper never revives a drained event; scrubbed events not replayed; a refused deferral left to the sweeper."""

import contextlib
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from integrations.models import WebhookEvent
from integrations.webhooks import InboundEvent, WebhookPermanentError, record_webhook, webhook_drain
from integrations.webhooks.processing import webhook_requeue_stale
from integrations.webhooks.registry import HANDLERS
from tests.payments import stripe_fakes


@pytest.fixture
def stripe_configured(settings):
    settings.STRIPE_SECRET_KEY = stripe_fakes.SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = stripe_fakes.WEBHOOK_SECRET
    settings.STRIPE_API_BASE = ""


@pytest.mark.django_db
def test_stripe_replay_outside_the_window_is_refused_whatever_t_items_are_added(client, stripe_configured):
    """A delivery Stripe signed 1 h ago, replayed with an extra ` t=<now>` item in its Stripe-Signature.

    The SDK verifies the HMAC with the first item whose key is exactly "t" (the old, signed one); the replay
    window must be judged on that same timestamp, not on a stripped " t=<now>" the SDK never looked at.
    """
    evt = stripe_fakes.event("customer.created", {"id": "cus_replayed", "object": "customer"}, event_id="evt_replayed")
    body = json.dumps(evt).encode()
    old = int(time.time()) - 3600
    mac = hmac.new(stripe_fakes.WEBHOOK_SECRET.encode(), f"{old}.".encode() + body, hashlib.sha256).hexdigest()
    forged = f"v1={mac}, t={int(time.time())},t={old}"

    response = client.post(
        "/webhooks/stripe/", body, content_type="application/json", headers={"Stripe-Signature": forged}
    )

    assert response.status_code == 403, response.content
    assert response.json()["error"] == "stale_signature"
    assert not WebhookEvent.objects.filter(event_id="evt_replayed").exists()


@pytest.mark.django_db
def test_stripe_genuine_fresh_delivery_still_accepted(client, stripe_configured):
    evt = stripe_fakes.event("customer.created", {"id": "cus_ok", "object": "customer"}, event_id="evt_fresh_ok")
    body = json.dumps(evt).encode()
    response = client.post(
        "/webhooks/stripe/",
        body,
        content_type="application/json",
        headers={"Stripe-Signature": stripe_fakes.sign(body)},
    )
    assert response.status_code == 200, response.content


# --- the stale-event sweeper against a drain in progress ---------------------------------------


def _wait_for_lock_waiter(timeout=10):
    """Until another session waits on a row lock (the sweeper's UPDATE behind the drain's batch)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.02)
    return False


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_sweeper_never_revives_an_event_a_drain_just_failed_for_good(monkeypatch, settings):
    """A backlog: an event received minutes ago is in a drain's batch when the beat sweeper runs.

    The sweeper reads it as overdue (its committed state is `received`) and stamps it; its UPDATE waits for the
    drain's row lock. The drain then fails the event for good (next_attempt_at NULL, alert raised). The stamp
    must not land on that row afterwards: it made the dead event due again, so it was run once more past its
    permanent failure (and held later events of its object meanwhile).
    """
    inside, release = threading.Event(), threading.Event()
    runs = []

    def handler(event):
        runs.append(event.event_id)
        if len(runs) == 1:
            inside.set()
            release.wait(10)
        raise WebhookPermanentError("the thing cannot exist")

    monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), handler)
    inbound = InboundEvent(event_id="old1", type="thing.updated", payload={"id": "old1"})
    event, _ = record_webhook(provider="hubtest", inbound=inbound)
    long_ago = timezone.now() - timedelta(seconds=settings.WEBHOOK_REQUEUE_AFTER_SECONDS + 60)
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=long_ago, next_attempt_at=long_ago)

    errors = []

    def run(fn, **kwargs):
        try:
            fn(**kwargs)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    drain = threading.Thread(target=run, args=(webhook_drain,), kwargs={"provider": "hubtest"})
    drain.start()
    assert inside.wait(10)
    sweeper = threading.Thread(target=run, args=(webhook_requeue_stale,))
    sweeper.start()
    try:
        assert _wait_for_lock_waiter()
    finally:
        release.set()
        drain.join(10)
        sweeper.join(10)
    assert errors == []

    row = WebhookEvent.objects.get(pk=event.pk)
    assert row.status == WebhookEvent.Status.FAILED
    assert row.next_attempt_at is None  # failed for good: only a replay brings it back
    webhook_drain(provider="hubtest")
    assert runs == ["old1"]


# --- replaying an event whose payload retention removed --------------------------------------


@pytest.mark.django_db
def test_an_event_whose_payload_retention_removed_is_not_replayed_to_hold_its_object(monkeypatch):
    """RETENTION_WEBHOOK_PAYLOAD_DAYS empties the payload of old processed events (retention.webhook_payloads).

    Replaying one gave its handler an empty payload: it failed, was retried with backoff WEBHOOK_MAX_ATTEMPTS
    times and raised a critical alert, and all that time, being the oldest event of its object, it held back
    every new event of that object (a month-old payment's refund or dispute). Nothing can process it again.
    """
    from integrations.retention import webhook_payloads
    from integrations.webhooks import webhook_replay
    from integrations.webhooks.registry import ORDERING_KEYS

    def handler(event):  # like Stripe's: it reads what the provider sent
        assert event.payload["object"]

    monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), handler)
    monkeypatch.setitem(ORDERING_KEYS, "hubtest", lambda payload: payload.get("object", ""))

    def store(event_id, seconds):
        payload = {"id": event_id, "object": "pi_S"}
        occurred = timezone.now() - timedelta(days=40) + timedelta(seconds=seconds)
        inbound = InboundEvent(event_id=event_id, type="thing.updated", payload=payload, occurred_at=occurred)
        return record_webhook(provider="hubtest", inbound=inbound)[0]

    old = store("s1", 0)
    webhook_drain(provider="hubtest")
    assert webhook_payloads(cutoff=timezone.now() + timedelta(seconds=1), batch_size=100) == 1
    old.refresh_from_db()

    with contextlib.suppress(ValueError):  # refused, with the reason
        webhook_replay(event=old)
    new = store("s2", 86400 * 39)  # a live event of the same object
    webhook_drain(provider="hubtest")

    assert WebhookEvent.objects.get(pk=new.pk).status == WebhookEvent.Status.PROCESSED
    assert WebhookEvent.objects.get(pk=old.pk).status == WebhookEvent.Status.PROCESSED


@pytest.mark.django_db
def test_the_admin_says_why_a_scrubbed_event_is_not_replayed(staff_user):
    from django.test import Client

    from tests.integrations.factories import WebhookEventFactory

    staff_user.is_superuser = True
    staff_user.save()
    admin = Client()
    admin.force_login(staff_user)
    event = WebhookEventFactory(status=WebhookEvent.Status.PROCESSED, payload={}, headers={}, next_attempt_at=None)

    page = admin.post(f"/admin/integrations/webhookevent/{event.pk}/replay/", follow=True)

    assert page.status_code == 200
    assert "retention policy" in page.content.decode()
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED


# --- a limiter deferral the broker refuses ------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_deferral_the_broker_refuses_leaves_the_row_to_the_sweeper_instead_of_giving_up(monkeypatch):
    """A worker's run finds no limiter token and re-sends itself for later (ProviderTask._defer); the broker
    refuses that message. Nothing was sent to the provider: the row must stay in the outbox (the sweeper sends
    it), not be given up (give_up hook: the SMS marked failed, never sent, a task_failed alert)."""
    from celery import uuid
    from celery.app.trace import build_tracer

    from config.celery import app as celery_app
    from integrations import outbox
    from integrations.errors import RateLimited
    from integrations.models import Alert
    from messaging.models import SmsMessage
    from messaging.tasks import sms_send
    from tests.integrations.outbox_kit import broker_down, next_attempt
    from tests.messaging.factories import SmsFactory

    sms = SmsFactory(status="queued")
    outbox.mark_enqueued(outbox.kind_for(sms_send), sms.pk)

    def no_token(sms_id):
        raise RateLimited("twilio", "account", 2.0)

    monkeypatch.setattr(sms_send, "run", no_token)
    monkeypatch.setattr(outbox, "LeaseKeeper", lambda *a: contextlib.nullcontext())  # no renewal thread here
    tracer = build_tracer(sms_send.name, sms_send, eager=False, propagate=False, app=celery_app)
    with broker_down():
        tracer(uuid(), (sms.pk,), {}, request={"is_eager": False, "retries": 0})

    sms.refresh_from_db()
    assert sms.status != SmsMessage.Status.FAILED
    assert next_attempt(sms) is not None  # still in the outbox: the sweeper sends it again
    assert not Alert.objects.filter(kind=Alert.Kind.TASK_FAILED).exists()
