"""The beat task's thresholds: each raises its alert when crossed and resolves it when back under."""

import datetime as dt
import json
import time
from decimal import Decimal

import pytest
from django.utils import timezone

from integrations.alerting import counters, thresholds
from integrations.alerting.thresholds import thresholds_evaluate
from integrations.models import Alert, Budget, ProviderCall, UsageRollup, WorkerHeartbeat

pytestmark = pytest.mark.django_db
Outcome = ProviderCall.Outcome


def calls(provider, outcome, n, operation="charge", at=None):
    rows = ProviderCall.objects.bulk_create(
        ProviderCall(provider=provider, operation=operation, outcome=outcome) for _ in range(n)
    )
    if at is not None:
        ProviderCall.objects.filter(pk__in=[r.pk for r in rows]).update(created_at=at)


def open_alerts():
    return dict(Alert.objects.filter(resolved_at__isnull=True).values_list("dedupe_key", "kind"))


@pytest.fixture(autouse=True)
def a_live_worker():
    WorkerHeartbeat.objects.create(hostname="celery@w1", seen_at=timezone.now())


def run(check, now=None):
    return thresholds_evaluate(now=now, checks=[check])


def test_an_error_rate_over_the_threshold_alerts_and_resolves_when_it_falls(settings):
    settings.ALERT_ERROR_RATE, settings.ALERT_MIN_CALLS = 0.25, 20
    calls("stripe", Outcome.OK, 14)
    calls("stripe", Outcome.ERROR, 4)
    calls("stripe", Outcome.TIMEOUT, 2)  # 6 of 20 = 30 %
    calls("twilio", Outcome.ERROR, 5)  # too few calls to judge
    thresholds_evaluate()
    alert = Alert.objects.get(dedupe_key="threshold:error_rate:stripe")
    assert alert.kind == "provider_failure_rate" and "6 of 20 calls failed" in alert.message
    assert "threshold:error_rate:twilio" not in open_alerts()

    calls("stripe", Outcome.OK, 20)  # 6 of 40 = 15 %
    thresholds_evaluate()
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_a_429_rate_over_the_threshold_alerts(settings):
    settings.ALERT_429_RATE, settings.ALERT_MIN_CALLS = 0.10, 20
    calls("openai", Outcome.OK, 17)
    calls("openai", Outcome.RATE_LIMITED, 3)
    run(thresholds.call_rates)
    assert open_alerts() == {"threshold:rate_limited:openai": "rate_limited"}


def test_old_calls_outside_the_window_do_not_count(settings):
    settings.ALERT_MIN_CALLS = 20
    calls("stripe", Outcome.ERROR, 30, at=timezone.now() - dt.timedelta(hours=2))
    run(thresholds.call_rates)
    assert open_alerts() == {}


def test_a_spike_of_refused_webhook_signatures_alerts(settings):
    settings.ALERT_WEBHOOK_SIGNATURE_FAILURES = 5
    for _ in range(4):
        counters.signature_failure_count(provider="stripe")
    run(thresholds.webhook_signatures)
    assert open_alerts() == {}
    counters.signature_failure_count(provider="stripe")
    run(thresholds.webhook_signatures)
    assert open_alerts() == {"threshold:webhook_signature:stripe": "webhook_signature"}


def test_refused_signatures_are_counted_by_the_inbox(client, settings, monkeypatch):
    from integrations.webhooks.registry import VERIFIERS
    from tests.integrations import webhook_provider as hubtest

    settings.HUBTEST_WEBHOOK_SECRET = hubtest.SECRET
    monkeypatch.setitem(VERIFIERS, hubtest.PROVIDER, hubtest.verify)
    body = hubtest.event_body("evt_1")
    for _ in range(3):
        client.post("/webhooks/hubtest/", body, content_type="application/json", HTTP_X_HUBTEST_SIGNATURE="t=1,v1=x")
    assert counters.signature_failures(provider="hubtest", minutes=15) == 3


def test_oauth_refresh_failures_alert(settings):
    settings.ALERT_OAUTH_REFRESH_FAILURES = 3
    calls("google_oauth", Outcome.ERROR, 3, operation="token.refresh")
    calls("google_oauth", Outcome.ERROR, 5, operation="token.exchange")
    calls("microsoft_oauth", Outcome.ERROR, 2, operation="token.refresh")
    run(thresholds.oauth_refresh)
    assert open_alerts() == {"threshold:oauth_refresh:google_oauth": "oauth_refresh"}


def test_a_missing_worker_heartbeat_alerts_and_a_fresh_one_resolves_it(settings):
    settings.HEARTBEAT_MAX_AGE_SECONDS = 90
    WorkerHeartbeat.objects.update(seen_at=timezone.now() - dt.timedelta(minutes=5))
    thresholds_evaluate()
    assert open_alerts()["threshold:worker_heartbeat"] == "worker_down"
    WorkerHeartbeat.objects.update(seen_at=timezone.now())
    thresholds_evaluate()
    assert "threshold:worker_heartbeat" not in open_alerts()


def test_a_month_on_course_to_overspend_its_budget_alerts(settings):
    settings.ALERT_BUDGET_PROJECTION_MIN_ELAPSED = 0.1
    now = dt.datetime(2026, 11, 16, 0, 0, tzinfo=dt.UTC)  # half of November gone
    Budget.objects.create(provider="openai", monthly_limit_usd=Decimal("100"))
    UsageRollup.objects.create(hour=now - dt.timedelta(days=3), provider="openai", cost_usd=Decimal("45"))
    run(thresholds.cost_projection, now=now)
    assert open_alerts() == {}  # $90 projected
    UsageRollup.objects.create(hour=now - dt.timedelta(days=2), provider="openai", cost_usd=Decimal("10"))
    run(thresholds.cost_projection, now=now)
    alert = Alert.objects.get(kind="cost_projection")
    assert "$110.00" in alert.message and "$55.00 so far" in alert.message


@pytest.mark.redis
def test_queue_depth_and_the_age_of_the_oldest_task_alert(settings):
    import redis

    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.CELERY_TASK_QUEUES_NAMES = ["hubtest-queue"]
    settings.ALERT_QUEUE_DEPTH, settings.ALERT_QUEUE_AGE_SECONDS = 3, 300
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("hubtest-queue")
    try:
        old = {"headers": {"hub_enqueued_at": time.time() - 600}, "body": ""}
        client.lpush("hubtest-queue", json.dumps(old))
        run(thresholds.queues)
        assert open_alerts() == {"threshold:queue_age:hubtest-queue": "queue_backlog"}
        for _ in range(3):
            client.lpush("hubtest-queue", json.dumps({"headers": {"hub_enqueued_at": time.time()}, "body": ""}))
        run(thresholds.queues)
        assert "threshold:queue_depth:hubtest-queue" in open_alerts()
    finally:
        client.delete("hubtest-queue")


@pytest.mark.redis
def test_a_backlog_of_low_priority_tasks_counts_toward_its_queues_depth_and_age(settings):
    """Fee look-ups wait at BACKGROUND_PRIORITY in a list of their own: a backlog there must still alert."""
    from kombu import Connection

    from config.celery import app
    from payments.tasks import payment_fee_record
    from tests.integrations.outbox_kit import broker_at

    settings.CELERY_BROKER_URL = settings.REDIS_URL
    settings.CELERY_TASK_QUEUES_NAMES = ["payments"]
    settings.ALERT_QUEUE_DEPTH, settings.ALERT_QUEUE_AGE_SECONDS = 3, 300
    with Connection(settings.REDIS_URL) as connection, connection.SimpleQueue("payments") as queue:
        queue.clear()
        try:
            with broker_at(settings.REDIS_URL):
                for pk in range(3):
                    payment_fee_record.apply_async((pk,))
            assert app.conf.task_always_eager is False and queue.qsize() == 3
            run(thresholds.queues, now=timezone.now() + dt.timedelta(seconds=600))  # ten minutes later
        finally:
            queue.clear()
    assert open_alerts() == {
        "threshold:queue_depth:payments": "queue_backlog",
        "threshold:queue_age:payments": "queue_backlog",
    }


def test_every_published_task_is_stamped_with_its_enqueue_time():
    from integrations.signals import add_request_id_header

    headers = {}
    before = time.time()
    add_request_id_header(headers=headers)
    assert before <= headers[thresholds.ENQUEUED_AT_HEADER] <= time.time()


def test_one_broken_check_does_not_silence_the_others(settings):
    settings.ALERT_OAUTH_REFRESH_FAILURES = 1
    calls("google_oauth", Outcome.ERROR, 1, operation="token.refresh")

    def broken(now):
        raise RuntimeError("boom")

    thresholds_evaluate(checks=[broken, thresholds.oauth_refresh])
    assert "threshold:oauth_refresh:google_oauth" in open_alerts()


class TestBudgetAlertsSettle:
    """Budget alerts are raised as priced calls are recorded; the evaluation resolves them once back under."""

    @pytest.fixture
    def over_80(self, fake_provider, settings):
        from integrations import gateway

        settings.ALERT_EMAIL_TO = ["ops@example.com"]
        budget = Budget.objects.create(provider="acme", monthly_limit_usd=Decimal("1.00"))
        for _ in range(9):  # $0.90 of $1.00: the 80 % alert
            with gateway.attempt("acme", "send") as call:
                call.record(cost_usd="0.10")
        assert list(open_alerts().values()) == [Alert.Kind.BUDGET_THRESHOLD]
        return budget

    def evaluate(self):
        from integrations.alerting.tasks import alerts_evaluate

        alerts_evaluate.apply()
        return Alert.objects.get(kind=Alert.Kind.BUDGET_THRESHOLD)

    def test_last_months_alert_is_resolved_once_the_month_is_over(self, over_80):
        import time_machine

        from integrations.models import AlertDelivery

        assert self.evaluate().resolved_at is None  # still this month, still over
        now = timezone.now()
        with time_machine.travel(thresholds._month_bounds(now)[1] + dt.timedelta(hours=1)):
            alert = self.evaluate()
        assert alert.resolved_at is not None
        assert AlertDelivery.objects.filter(alert=alert, notice=AlertDelivery.Notice.RESOLVED).count() == 1

    def test_a_budget_raised_above_the_spend_resolves_its_alert(self, over_80):
        over_80.monthly_limit_usd = Decimal("1.20")  # 80 % is $0.96: $0.90 is back under
        over_80.save()
        assert self.evaluate().resolved_at is not None
