"""The webhook inbox: verify, store once, process once, never lose an event."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY

from integrations.models import Alert, WebhookEvent, WorkerHeartbeat
from integrations.webhooks import (
    InboundEvent,
    WebhookIgnored,
    WebhookPermanentError,
    inbox,
    receive_webhook,
    record_webhook,
    webhook_event_process,
    webhook_handler,
    webhook_mark_ignored,
    webhook_replay,
    webhook_requeue_stale,
    webhook_view,
)
from integrations.webhooks.processing import retry_delay
from integrations.webhooks.registry import HANDLERS, VERIFIERS
from integrations.webhooks.tasks import webhook_drain_task, webhook_process
from tests.integrations import webhook_provider as hubtest
from tests.integrations.factories import WebhookEventFactory

URL = "/webhooks/hubtest/"
Status = WebhookEvent.Status


def metric(result, provider="hubtest"):
    return REGISTRY.get_sample_value("hub_webhook_events_total", {"provider": provider, "result": result}) or 0


def post(client, body, signature=None, **extra):
    headers = {} if signature is None else {"HTTP_X_HUBTEST_SIGNATURE": signature}
    return client.post(URL, body, content_type="application/json", **headers, **extra)


@pytest.fixture
def hubtest_provider(monkeypatch, settings):
    """Mount the signing test provider on the generic route, for this test only."""
    settings.HUBTEST_WEBHOOK_SECRET = hubtest.SECRET
    monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, hubtest.verify)


@pytest.fixture
def handled(monkeypatch):
    """Register a recording handler for hubtest `thing.updated`; returns the list of handled event ids."""
    calls = []
    lock = threading.Lock()

    def handler(event):
        with lock:
            calls.append(event.event_id)

    monkeypatch.setitem(HANDLERS, ("hubtest", "thing.updated"), handler)
    return calls


@pytest.fixture
def register(monkeypatch):
    def add(event_type, fn, provider="hubtest"):
        monkeypatch.setitem(HANDLERS, (provider, event_type), fn)

    return add


def _drain_as_a_worker(monkeypatch):
    """One run of the drain task as a worker runs it (not called directly, not eager), one batch claimed;
    returns what it queued: [(args, countdown)]."""
    queued = []
    monkeypatch.setattr(
        webhook_drain_task, "apply_async", lambda args, countdown=None: queued.append((args, countdown))
    )
    webhook_drain_task.push_request(id="task-1", args=["hubtest"], kwargs={}, called_directly=False, is_eager=False)
    try:
        assert webhook_drain_task.run("hubtest") == 1
    finally:
        webhook_drain_task.pop_request()
    return queued


@pytest.fixture
def celery_eager():
    """Run tasks in-process when enqueued (a real Celery mode), so on_commit enqueues process at once."""
    from config.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


@pytest.mark.django_db
@pytest.mark.usefixtures("hubtest_provider")
class TestReceiving:
    def test_a_signed_event_is_stored_and_answered_200(self, client):
        before = metric("received")
        body = hubtest.event_body("evt_1")
        resp = post(client, body, hubtest.sign(body), HTTP_AUTHORIZATION="Bearer do-not-store")

        assert resp.status_code == 200
        assert resp.json() == {"status": "received", "event_id": "evt_1"}
        event = WebhookEvent.objects.get()
        assert (event.provider, event.event_id, event.type) == ("hubtest", "evt_1", "thing.updated")
        assert event.status == Status.RECEIVED and event.signature_verified
        assert event.payload["id"] == "evt_1" and event.occurred_at is not None
        assert metric("received") == before + 1

    def test_secrets_in_headers_are_never_stored_but_the_signature_is_kept_for_audit(self, client):
        body = hubtest.event_body("evt_h")
        post(client, body, hubtest.sign(body), HTTP_AUTHORIZATION="Bearer do-not-store", HTTP_COOKIE="s=1")
        headers = WebhookEvent.objects.get().headers
        assert "Authorization" not in headers and "Cookie" not in headers
        assert "do-not-store" not in str(headers)
        assert headers[hubtest.SIGNATURE_HEADER].startswith("t=")

    def test_a_bad_signature_is_403_and_nothing_is_stored(self, client):
        before = metric("rejected")
        body = hubtest.event_body()
        resp = post(client, body, hubtest.sign(body, secret="whsec_wrong"))
        assert resp.status_code == 403
        assert resp.json()["error"] == "bad_signature" and resp.json()["detail"]
        assert not WebhookEvent.objects.exists()
        assert metric("rejected") == before + 1

    def test_a_body_changed_after_signing_is_403(self, client):
        signature = hubtest.sign(hubtest.event_body("evt_1"))
        resp = post(client, hubtest.event_body("evt_2"), signature)
        assert resp.status_code == 403
        assert not WebhookEvent.objects.exists()

    def test_a_missing_signature_is_400_and_nothing_is_stored(self, client):
        resp = post(client, hubtest.event_body())
        assert resp.status_code == 400
        assert resp.json()["error"] == "missing_signature"
        assert not WebhookEvent.objects.exists()

    def test_a_stale_signature_timestamp_is_403(self, client):
        body = hubtest.event_body()
        resp = post(client, body, hubtest.sign(body, timestamp=time.time() - 301))
        assert resp.status_code == 403 and resp.json()["error"] == "stale_signature"

    def test_a_malformed_body_is_400_and_nothing_is_stored(self, client):
        body = b'{"id": "evt_1", "type": '
        resp = post(client, body, hubtest.sign(body))
        assert resp.status_code == 400
        assert resp.json()["error"] == "malformed_body"
        assert not WebhookEvent.objects.exists()

    def test_a_json_body_that_is_not_an_object_is_400(self, client):
        body = b'["evt_1"]'
        assert post(client, body, hubtest.sign(body)).status_code == 400
        assert not WebhookEvent.objects.exists()

    def test_an_oversized_body_is_413_and_nothing_is_stored(self, client, settings):
        settings.WEBHOOK_MAX_BYTES = 200
        body = hubtest.event_body(padding="x" * 300)
        resp = post(client, body, hubtest.sign(body))
        assert resp.status_code == 413
        assert resp.json()["error"] == "payload_too_large"
        assert not WebhookEvent.objects.exists()

    def test_an_unconfigured_webhook_secret_is_503_naming_the_setting(self, client, settings):
        settings.HUBTEST_WEBHOOK_SECRET = ""
        body = hubtest.event_body()
        resp = post(client, body, hubtest.sign(body))
        assert resp.status_code == 503
        assert resp.json()["error"] == "webhook_not_configured"
        assert "HUBTEST_WEBHOOK_SECRET" in resp.json()["detail"]

    def test_only_post_is_accepted_with_a_json_405(self, client):
        resp = client.get(URL)
        assert resp.status_code == 405
        assert resp.json()["error"] == "method_not_allowed"
        assert resp["Allow"] == "POST"

    def test_no_csrf_token_is_needed(self):
        body = hubtest.event_body()
        resp = post(Client(enforce_csrf_checks=True), body, hubtest.sign(body))
        assert resp.status_code == 200

    def test_a_duplicate_delivery_answers_200_and_stores_one_row(self, client):
        before = metric("duplicate")
        body = hubtest.event_body("evt_dup")
        assert post(client, body, hubtest.sign(body)).json()["status"] == "received"
        resp = post(client, body, hubtest.sign(body))
        assert resp.status_code == 200
        assert resp.json() == {"status": "duplicate", "event_id": "evt_dup"}
        assert WebhookEvent.objects.count() == 1
        assert metric("duplicate") == before + 1

    def test_a_duplicate_costs_its_insert_alone(self, client):
        body = hubtest.event_body("evt_dup_q")
        post(client, body, hubtest.sign(body))
        with CaptureQueriesContext(connection) as queries:
            resp = post(client, body, hubtest.sign(body))
        assert resp.json() == {"status": "duplicate", "event_id": "evt_dup_q"}
        # The stored row is not read back: the answer needs only the event id.
        assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]

    def test_a_clean_payload_is_stored_without_a_walk_over_it(self, client, monkeypatch):
        walked = []
        real = inbox.strip_unstorable

        def counting(value):
            if isinstance(value, dict) and "id" in value:
                walked.append(value["id"])
            return real(value)

        monkeypatch.setattr(inbox, "strip_unstorable", counting)
        body = hubtest.event_body("evt_clean", data={"object": {"name": "Zoë", "n": 1.5}})
        assert post(client, body, hubtest.sign(body)).json()["status"] == "received"
        assert walked == []
        assert WebhookEvent.objects.get(event_id="evt_clean").payload["data"]["object"] == {"name": "Zoë", "n": 1.5}

    @pytest.mark.parametrize(
        "fragment",
        [
            {"name": "Ann\x00e"},
            {"na\x00me": "Anne"},
            {"name": "Ann\ud800e"},
            {"name": "Ann\x00e", "big": 10**30},  # beyond what orjson writes: walked anyway
            {"name": "a backslash and u0000: \\u0000"},  # text, not a NUL: kept as sent
        ],
        ids=["nul-value", "nul-key", "lone-surrogate", "nul-beside-a-big-int", "escaped-backslash"],
    )
    def test_what_postgresql_cannot_store_is_stripped_from_a_signed_payload(self, client, fragment):
        body = json.dumps({"id": "evt_strip", "type": "thing.updated", "data": {"object": fragment}}).encode()
        assert post(client, body, hubtest.sign(body)).json()["status"] == "received"
        stored = WebhookEvent.objects.get(event_id="evt_strip").payload["data"]["object"]
        assert stored == {
            k.replace("\x00", ""): (v.replace("\x00", "").replace("\ud800", "") if isinstance(v, str) else v)
            for k, v in fragment.items()
        }

    def test_processing_is_enqueued_on_commit_for_a_new_event_only(self, client, django_capture_on_commit_callbacks):
        body = hubtest.event_body("evt_q")
        with django_capture_on_commit_callbacks() as first:
            post(client, body, hubtest.sign(body))
        with django_capture_on_commit_callbacks() as second:
            post(client, body, hubtest.sign(body))
        assert len(first) == 1 and len(second) == 0

    def test_an_unknown_provider_is_a_json_404(self, client):
        resp = client.post("/webhooks/nosuch/", b"{}", content_type="application/json")
        assert resp.status_code == 404
        assert resp.json()["error"] == "unknown_webhook"


@pytest.mark.django_db
def test_production_urls_do_not_expose_the_test_provider(client):
    assert "hubtest" not in VERIFIERS
    body = hubtest.event_body()
    assert post(client, body, hubtest.sign(body)).status_code == 404


@pytest.mark.django_db
class TestCustomViews:
    def test_record_webhook_returns_created_then_the_existing_row(self):
        inbound = InboundEvent(event_id="CA123", type="voice.incoming", payload={"CallSid": "CA123"})
        first, created = record_webhook(provider="twilio", inbound=inbound)
        again, created_again = record_webhook(provider="twilio", inbound=inbound)
        assert created and not created_again
        assert first.pk == again.pk and WebhookEvent.objects.count() == 1

    def test_a_synchronous_webhook_builds_its_own_response_after_storing(self):
        def verify(request):
            return InboundEvent(event_id=request.POST["CallSid"], type="voice.incoming", payload=dict(request.POST))

        def respond(event, created):
            return HttpResponse(f"<Response><Say>{event.event_id} {created}</Say></Response>", content_type="text/xml")

        request = RequestFactory().post("/webhooks/twilio/voice/", {"CallSid": "CA9"})
        resp = receive_webhook(request, provider="twilio", verify=verify, respond=respond)
        assert resp.status_code == 200 and b"CA9 True" in resp.content
        assert WebhookEvent.objects.filter(provider="twilio", event_id="CA9").exists()

    def test_a_batched_delivery_stores_each_event_once(self):
        def verify(request):
            return [InboundEvent(event_id=f"n{i}", type="changed", payload={"i": i}) for i in (1, 2)]

        view = webhook_view(provider="outlook", verify=verify)
        request = RequestFactory().post("/webhooks/outlook/", b"{}", content_type="application/json")
        assert json.loads(view(request).content) == {"status": "received", "received": 2, "duplicate": 0}
        assert json.loads(view(request).content) == {"status": "received", "received": 0, "duplicate": 2}
        assert WebhookEvent.objects.filter(provider="outlook").count() == 2

    def test_an_event_without_an_id_is_400(self):
        view = webhook_view(provider="outlook", verify=lambda r: InboundEvent(event_id="", type="x", payload={}))
        resp = view(RequestFactory().post("/webhooks/outlook/", b"{}", content_type="application/json"))
        assert resp.status_code == 400 and json.loads(resp.content)["error"] == "malformed_event"
        assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
class TestProcessing:
    @pytest.mark.usefixtures("hubtest_provider", "celery_eager")
    def test_a_received_event_is_handled_and_marked_processed(
        self, client, handled, django_capture_on_commit_callbacks
    ):
        body = hubtest.event_body("evt_p")
        with django_capture_on_commit_callbacks(execute=True):
            post(client, body, hubtest.sign(body))
        event = WebhookEvent.objects.get()
        assert handled == ["evt_p"]
        assert event.status == Status.PROCESSED
        assert event.processed_at is not None and event.attempts == 1 and event.next_attempt_at is None

    def test_a_processed_event_is_never_handled_again(self, handled):
        event = WebhookEventFactory()
        assert webhook_event_process(event_id=event.pk).status == "processed"
        assert webhook_event_process(event_id=event.pk).status == "skipped"
        webhook_process(event.pk)  # a redelivered task
        assert handled == [event.event_id]

    def test_a_failing_handler_marks_the_event_failed_and_rolls_back_its_writes(self, register):
        def handler(event):
            WorkerHeartbeat.objects.create(hostname=f"written-by-{event.event_id}", seen_at=timezone.now())
            raise RuntimeError("provider object not found yet")

        register("thing.updated", handler)
        before = metric("failed")
        event = WebhookEventFactory()
        result = webhook_event_process(event_id=event.pk)

        event.refresh_from_db()
        assert result.status == "failed" and result.retry_in is not None
        assert event.status == Status.FAILED and event.attempts == 1
        assert event.last_error == "RuntimeError: provider object not found yet"
        assert event.next_attempt_at is not None and event.processed_at is None
        assert not WorkerHeartbeat.objects.filter(hostname__startswith="written-by-").exists()
        assert metric("failed") == before + 1
        assert not Alert.objects.exists()

    def test_a_failed_event_is_retried_and_the_last_attempt_raises_an_alert(self, register, settings):
        settings.WEBHOOK_MAX_ATTEMPTS = 3
        outcomes = iter([RuntimeError("down"), RuntimeError("down"), RuntimeError("still down")])

        def handler(event):
            raise next(outcomes)

        register("thing.updated", handler)
        event = WebhookEventFactory()
        results = [webhook_event_process(event_id=event.pk) for _ in range(4)]

        assert [r.status for r in results] == ["failed", "failed", "failed", "skipped"]
        assert results[0].retry_in is not None and results[2].retry_in is None
        event.refresh_from_db()
        assert event.attempts == 3 and event.next_attempt_at is None
        alert = Alert.objects.get()
        assert alert.kind == Alert.Kind.WEBHOOK_FAILED and alert.provider == "hubtest"
        assert event.event_id in alert.message

    def test_the_drain_task_drains_again_when_the_earliest_retry_is_due(self, register, monkeypatch):
        register("thing.updated", lambda e: 1 / 0)
        event = WebhookEventFactory()
        queued = _drain_as_a_worker(monkeypatch)
        event.refresh_from_db()
        assert event.status == Status.FAILED and event.attempts == 1
        [(args, countdown)] = queued
        assert args == ("hubtest",)
        assert 0 <= countdown <= 10  # WEBHOOK_RETRY_BASE_SECONDS for the first retry
        assert event.next_attempt_at == pytest.approx(
            timezone.now() + timedelta(seconds=countdown), abs=timedelta(seconds=2)
        )

    def test_a_full_batch_with_a_failure_drains_on_at_once_and_again_when_the_retry_is_due(
        self, register, monkeypatch, settings
    ):
        """The drains that follow a full batch know nothing of its failure: its retry must be queued anyway."""
        settings.WEBHOOK_DRAIN_BATCH_SIZE = 1
        register("thing.updated", lambda e: 1 / 0)
        failing = WebhookEventFactory()
        WebhookEventFactory()
        queued = _drain_as_a_worker(monkeypatch)
        failing.refresh_from_db()
        assert failing.status == Status.FAILED and failing.attempts == 1
        assert (("hubtest",), None) in queued  # the next batch, now
        [countdown] = [c for _, c in queued if c is not None]  # and this one's retry
        assert 0 <= countdown <= 10

    def test_a_permanent_error_fails_at_once_and_raises_an_alert(self, register):
        register("thing.updated", lambda e: (_ for _ in ()).throw(WebhookPermanentError("unknown customer")))
        event = WebhookEventFactory()
        result = webhook_event_process(event_id=event.pk)
        assert result.status == "failed" and result.retry_in is None
        assert Alert.objects.filter(kind=Alert.Kind.WEBHOOK_FAILED).count() == 1

    def test_a_handler_error_quoting_a_secret_is_kept_and_alerted_redacted(self, register, settings):
        """The event's error is shown in admin and its alert goes to Slack, email and webhooks: no secret in either."""
        settings.STRIPE_SECRET_KEY = "sk_live_51HandlerLeakedKey000"
        leaked = "Bearer abcdefghijklmnop1234"

        def handler(event):
            raise WebhookPermanentError(f"upstream refused {settings.STRIPE_SECRET_KEY} with header {leaked}")

        register("thing.updated", handler)
        event = WebhookEventFactory()
        webhook_event_process(event_id=event.pk)

        event.refresh_from_db()
        alert = Alert.objects.get(kind=Alert.Kind.WEBHOOK_FAILED)
        for text in (event.last_error, alert.message):
            assert "upstream refused [redacted]" in text
            assert settings.STRIPE_SECRET_KEY not in text and "abcdefghijklmnop1234" not in text

    def test_an_alert_message_is_stored_without_secrets(self, settings):
        from integrations.alerts import alert_raise

        settings.TWILIO_AUTH_TOKEN = "twilio-token-value-123456"
        alert = alert_raise(kind=Alert.Kind.OPERATIONS, message="refused: token twilio-token-value-123456")
        alert_raise(kind=Alert.Kind.OPERATIONS, message="again: api_key=abcdef123456")  # counted on the open one
        alert.refresh_from_db()
        assert alert.occurrences == 2 and alert.message == "again: api_key=[redacted]"
        assert "twilio-token-value-123456" not in Alert.objects.get().message

    def test_a_failed_event_that_is_retried_and_succeeds_is_processed(self, register):
        outcomes = iter([RuntimeError("once"), None])

        def handler(event):
            if (exc := next(outcomes)) is not None:
                raise exc

        register("thing.updated", handler)
        event = WebhookEventFactory()
        webhook_event_process(event_id=event.pk)
        assert webhook_event_process(event_id=event.pk).status == "processed"
        event.refresh_from_db()
        assert event.attempts == 2 and event.last_error == ""

    def test_an_unknown_type_is_ignored(self, handled):
        before = metric("ignored")
        event = WebhookEventFactory(type="thing.unheard_of")
        assert webhook_event_process(event_id=event.pk).status == "ignored"
        event.refresh_from_db()
        assert event.status == Status.IGNORED and "thing.unheard_of" in event.last_error
        assert handled == []
        assert metric("ignored") == before + 1

    def test_a_fallback_handler_takes_types_without_their_own(self, register, handled):
        seen = []
        register("*", lambda e: seen.append(e.type))
        WebhookEventFactory(type="thing.updated")
        other = WebhookEventFactory(type="thing.other")
        for event in WebhookEvent.objects.all():
            webhook_event_process(event_id=event.pk)
        assert seen == [other.type] and len(handled) == 1

    def test_a_handler_can_ignore_an_out_of_order_event(self, register):
        def handler(event):
            raise WebhookIgnored("older than the state we hold")

        register("thing.updated", handler)
        event = WebhookEventFactory()
        assert webhook_event_process(event_id=event.pk).status == "ignored"
        event.refresh_from_db()
        assert event.last_error == "older than the state we hold"

    def test_the_retry_delay_is_full_jitter_under_an_exponential_cap(self, settings):
        settings.WEBHOOK_RETRY_BASE_SECONDS = 10
        settings.WEBHOOK_RETRY_MAX_SECONDS = 60
        delays = [retry_delay(attempts=n) for n in (1, 2, 3, 10) for _ in range(200)]
        assert all(0 <= d <= 60 for d in delays)
        assert max(retry_delay(attempts=1) for _ in range(200)) <= 10
        assert len({round(d, 3) for d in delays}) > 100  # jittered, not a fixed schedule

    def test_registering_a_second_handler_for_one_type_is_an_error(self, monkeypatch):
        from django.core.exceptions import ImproperlyConfigured

        def first(event):
            pass

        def second(event):
            pass

        monkeypatch.setitem(HANDLERS, ("hubtest", "x"), first)
        webhook_handler("hubtest", "x")(first)  # the same function again (a re-import) is fine
        with pytest.raises(ImproperlyConfigured, match="Two webhook handlers"):
            webhook_handler("hubtest", "x")(second)


@pytest.mark.django_db
class TestReplayAndRequeue:
    def test_replay_puts_a_failed_event_back_and_processes_it(
        self, handled, celery_eager, django_capture_on_commit_callbacks
    ):
        event = WebhookEventFactory(status=Status.FAILED, attempts=8, next_attempt_at=None, last_error="boom")
        assert webhook_event_process(event_id=event.pk).status == "skipped"  # out of retries
        with django_capture_on_commit_callbacks(execute=True):
            webhook_replay(event=event)
        event.refresh_from_db()
        assert event.status == Status.PROCESSED and handled == [event.event_id]
        assert event.attempts == 1

    def test_mark_ignored_leaves_processed_events_alone(self):
        pending = WebhookEventFactory()
        done = WebhookEventFactory(status=Status.PROCESSED)
        assert webhook_mark_ignored(event=pending) and not webhook_mark_ignored(event=done)
        pending.refresh_from_db()
        done.refresh_from_db()
        assert pending.status == Status.IGNORED and done.status == Status.PROCESSED
        assert webhook_event_process(event_id=pending.pk).status == "skipped"

    def test_stale_events_are_requeued_and_fresh_or_finished_ones_are_not(self, settings, handled, celery_eager):
        settings.WEBHOOK_REQUEUE_AFTER_SECONDS = 120
        old = timezone.now() - timedelta(seconds=600)
        stale = WebhookEventFactory(next_attempt_at=old)
        lost_retry = WebhookEventFactory(status=Status.FAILED, attempts=1, next_attempt_at=old)
        fresh = WebhookEventFactory()  # just received; its drain is still on the way
        WebhookEventFactory(status=Status.PROCESSED, next_attempt_at=None)
        WebhookEventFactory(status=Status.FAILED, attempts=8, next_attempt_at=None)  # out of retries
        WebhookEventFactory(provider="other", next_attempt_at=timezone.now())  # not overdue: its drain is not sent

        assert webhook_requeue_stale() == 2
        # The drain it sends takes the provider's whole backlog, the fresh event too.
        assert sorted(handled) == sorted([stale.event_id, lost_retry.event_id, fresh.event_id])
        assert WebhookEvent.objects.get(provider="other").status == Status.RECEIVED
        assert webhook_requeue_stale() == 0

    def test_requeue_stamps_events_so_the_next_tick_does_not_send_them_again(self):
        stale = WebhookEventFactory(next_attempt_at=timezone.now() - timedelta(seconds=600))
        assert webhook_requeue_stale() == 1  # memory broker: nothing consumes it
        stale.refresh_from_db()
        assert stale.status == Status.RECEIVED
        assert webhook_requeue_stale() == 0

    def test_the_beat_schedule_runs_the_requeue_task(self, settings):
        from config.celery import app

        entry = settings.CELERY_BEAT_SCHEDULE["integrations.webhook_requeue_stale"]
        assert entry["task"] in app.tasks
        assert "integrations.webhook_drain" in app.tasks
        assert "integrations.webhook_process" in app.tasks  # for messages queued before drains


@pytest.mark.django_db
class TestAdmin:
    @pytest.fixture
    def admin_client(self, client, staff_user):
        client.force_login(staff_user)
        return client

    def test_the_list_filters_and_the_pretty_payload_render(self, admin_client):
        event = WebhookEventFactory(payload={"id": "evt_x", "data": {"amount": 4200}})
        resp = admin_client.get("/admin/integrations/webhookevent/?status=received&provider=hubtest")
        assert resp.status_code == 200 and event.event_id.encode() in resp.content
        resp = admin_client.get(f"/admin/integrations/webhookevent/?q={event.event_id}")
        assert resp.status_code == 200 and event.event_id.encode() in resp.content
        detail = admin_client.get(f"/admin/integrations/webhookevent/{event.pk}/change/")
        assert detail.status_code == 200
        assert b"&quot;amount&quot;: 4200" in detail.content

    def test_a_payment_intents_client_secret_is_not_on_the_events_page_though_the_row_keeps_it(self, admin_client):
        intent = {"id": "pi_1", "object": "payment_intent", "client_secret": "pi_1_secret_Xq9", "amount": 4200}
        event = WebhookEventFactory(payload={"id": "evt_pi", "data": {"object": intent}, "list": [intent]})
        detail = admin_client.get(f"/admin/integrations/webhookevent/{event.pk}/change/").content.decode()
        assert "pi_1_secret_Xq9" not in detail and "&quot;amount&quot;: 4200" in detail
        event.refresh_from_db()
        assert event.payload["data"]["object"]["client_secret"] == "pi_1_secret_Xq9"  # a replay still has it

    def test_the_replay_action_queues_events_again(self, admin_client):
        event = WebhookEventFactory(status=Status.FAILED, attempts=8, next_attempt_at=None)
        resp = admin_client.post(
            "/admin/integrations/webhookevent/", {"action": "replay", "_selected_action": [event.pk]}, follow=True
        )
        assert resp.status_code == 200
        event.refresh_from_db()
        assert event.status == Status.RECEIVED and event.attempts == 0

    def test_the_mark_ignored_action(self, admin_client):
        event = WebhookEventFactory()
        admin_client.post(
            "/admin/integrations/webhookevent/", {"action": "mark_ignored", "_selected_action": [event.pk]}
        )
        event.refresh_from_db()
        assert event.status == Status.IGNORED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hubtest_provider", "celery_eager")
def test_fifty_concurrent_deliveries_store_one_event_and_run_the_handler_once(register):
    """The same webhook delivered 50 times at once, each delivery also running the processing task."""
    calls = []
    calls_lock = threading.Lock()

    def handler(event):
        with calls_lock:
            calls.append(event.event_id)
        WorkerHeartbeat.objects.create(hostname=f"handled-{event.event_id}", seen_at=timezone.now())
        time.sleep(0.05)  # hold the row lock while other threads try to process

    register("thing.updated", handler)
    body = hubtest.event_body("evt_storm")
    signature = hubtest.sign(body)
    n = 50
    barrier = threading.Barrier(n)
    answers, outcomes, errors = [], [], []

    def deliver():
        try:
            barrier.wait(timeout=30)
            resp = post(Client(), body, signature)
            answers.append((resp.status_code, resp.json()["status"]))
            # Process again from every thread, after the delivery committed,
            # as redelivered or requeued tasks would.
            pk = WebhookEvent.objects.get(provider="hubtest", event_id="evt_storm").pk
            outcomes.append(webhook_event_process(event_id=pk).status)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    # Build the middleware chain once first: django-prometheus registers its metrics when the chain is
    # built, and 50 threads building it at once would race on that registry (not what this test is about).
    Client().get("/healthz")
    threads = [threading.Thread(target=deliver) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert len(answers) == n and all(code == 200 for code, _ in answers)
    assert sorted(s for _, s in answers).count("received") == 1
    assert WebhookEvent.objects.filter(event_id="evt_storm").count() == 1
    assert calls == ["evt_storm"]
    assert WorkerHeartbeat.objects.filter(hostname="handled-evt_storm").count() == 1
    event = WebhookEvent.objects.get(event_id="evt_storm")
    assert event.status == Status.PROCESSED and event.attempts == 1
    assert set(outcomes) <= {"processed", "skipped"}


def _deliver_while_the_first_insert_runs(bodies, fail_the_group=False, release_when_the_others_are_answered=False):
    """Post `bodies[0]`, hold its INSERT until every other body's delivery waits for it, then let it go.

    Returns (each delivery's JSON answer in `bodies` order, the rows of each INSERT of the inbox in order).
    """
    from integrations.webhooks import inbox as inbox_module

    held, release, lock = threading.Event(), threading.Event(), threading.Lock()
    statements, answers, errors = [], [None] * len(bodies), []

    def watch(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "integrations_webhookevent"'):
            rows = sql.count("), (") + 1
            with lock:
                statements.append(rows)
                first = len(statements) == 1
            if first:
                held.set()
                assert release.wait(20)
            if fail_the_group and rows > 1:
                from django.db import OperationalError

                raise OperationalError("the group's statement failed")
        return execute(sql, params, many, context)

    def deliver(i):
        try:
            with connection.execute_wrapper(watch):
                resp = post(Client(), bodies[i], hubtest.sign(bodies[i]))
            answers[i] = (resp.status_code, resp.json())
        except Exception as exc:  # surfaced by the caller's assertion
            errors.append(exc)
        finally:
            connection.close()

    Client().get("/healthz")  # the middleware chain built once, not by racing threads
    first = threading.Thread(target=deliver, args=(0,))
    first.start()
    assert held.wait(20)
    others = [threading.Thread(target=deliver, args=(i,)) for i in range(1, len(bodies))]
    for t in others:
        t.start()
    deadline = time.monotonic() + 5
    group = getattr(inbox_module, "_group_insert", None)
    if release_when_the_others_are_answered:
        while not all(answers[1:]) and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        while (group is None or len(group._waiting) < len(others)) and time.monotonic() < deadline:
            time.sleep(0.005)
    release.set()
    for t in [first, *others]:
        t.join(timeout=30)
    assert errors == []
    return answers, statements


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hubtest_provider")
def test_deliveries_that_arrive_while_an_insert_runs_are_stored_by_one_statement_each_answered_as_alone(monkeypatch):
    """Group commit on the ack path: one statement, one commit and one drain request for the deliveries that
    waited, a duplicate among them stored once and answered as a duplicate."""
    from integrations.webhooks import dispatch

    drains = []
    monkeypatch.setattr(dispatch, "request_drain", lambda provider, **kw: drains.append(provider))
    bodies = [hubtest.event_body(f"evt_group_{i}") for i in range(4)]
    bodies.append(bodies[2])  # a provider's retry, arriving beside the first delivery
    answers, statements = _deliver_while_the_first_insert_runs(bodies)

    assert statements == [1, 4]
    assert all(code == 200 for code, _ in answers)
    statuses = [answer["status"] for _, answer in answers]
    assert statuses[:2] == ["received", "received"] and statuses[3] == "received"
    assert sorted(statuses[2::2]) == ["duplicate", "received"]  # the two deliveries of evt_group_2
    assert sorted(WebhookEvent.objects.values_list("event_id", flat=True)) == [f"evt_group_{i}" for i in range(4)]
    assert drains == ["hubtest", "hubtest"]  # the first delivery's, then the group's


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hubtest_provider")
def test_when_a_group_statement_fails_each_delivery_is_stored_alone():
    bodies = [hubtest.event_body(f"evt_alone_{i}") for i in range(3)]
    answers, statements = _deliver_while_the_first_insert_runs(bodies, fail_the_group=True)

    assert statements == [1, 2, 1, 1]
    assert [answer for _, answer in answers] == [{"status": "received", "event_id": f"evt_alone_{i}"} for i in range(3)]
    assert WebhookEvent.objects.filter(event_id__startswith="evt_alone_").count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("hubtest_provider")
def test_a_delivery_stuck_behind_a_slow_insert_is_stored_alone(monkeypatch):
    from integrations.webhooks import inbox as inbox_module

    monkeypatch.setattr(inbox_module, "GROUP_WAIT_SECONDS", 0.1)
    bodies = [hubtest.event_body(f"evt_stuck_{i}") for i in range(3)]
    answers, statements = _deliver_while_the_first_insert_runs(bodies, release_when_the_others_are_answered=True)

    # Both answered while the first INSERT was still held, each by a statement of its own.
    assert statements == [1, 1, 1]
    assert [answer for _, answer in answers] == [{"status": "received", "event_id": f"evt_stuck_{i}"} for i in range(3)]
