"""Alerts of a check that failed stay open; the call-log writer outlives a failed round; booked tokens honour Retry-After; non-finite Retry-After; no credential URLs in the audit trail."""

import pytest
from django.utils import timezone

from integrations.alerting import thresholds
from integrations.alerting.thresholds import thresholds_evaluate
from integrations.alerts import alert_raise
from integrations.models import Alert, ProviderCall, WorkerHeartbeat

pytestmark = pytest.mark.django_db
Outcome = ProviderCall.Outcome


@pytest.fixture
def a_live_worker():
    WorkerHeartbeat.objects.create(hostname="celery@w1", seen_at=timezone.now())


def _calls(provider, outcome, n):
    ProviderCall.objects.bulk_create(
        ProviderCall(provider=provider, operation="charge", outcome=outcome) for _ in range(n)
    )


def test_a_check_that_fails_to_run_does_not_resolve_the_alerts_it_owns(settings, monkeypatch, a_live_worker):
    """A check that raises (the database hiccups) cannot say its figure is back under: its open alerts stay open.

    Before: the run resolved them (a "resolved" notice to every channel) and the next run opened them again
    (an "opened" notice): a false all-clear and a duplicate alert for one database blip."""
    settings.ALERT_ERROR_RATE, settings.ALERT_MIN_CALLS = 0.25, 20
    _calls("stripe", Outcome.ERROR, 20)
    thresholds_evaluate()
    alert = Alert.objects.get(dedupe_key="threshold:error_rate:stripe")

    def broken(now):
        raise RuntimeError("database went away")

    broken.__name__ = "call_rates"
    monkeypatch.setattr(thresholds, "CHECKS", [broken if c is thresholds.call_rates else c for c in thresholds.CHECKS])
    thresholds_evaluate()
    alert.refresh_from_db()
    assert alert.resolved_at is None


def test_a_broker_that_cannot_be_read_does_not_resolve_the_queue_alerts(settings, a_live_worker):
    """Queue depth unknown (the broker is unreachable) is not queue depth back under its threshold."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.CELERY_TASK_QUEUES_NAMES = ["default"]
    alert = alert_raise(
        kind=Alert.Kind.QUEUE_BACKLOG,
        message="Queue 'default' holds 5000 tasks",
        dedupe_key="threshold:queue_depth:default",
    )
    thresholds_evaluate()
    alert.refresh_from_db()
    assert alert.resolved_at is None


@pytest.mark.django_db(transaction=True)  # the writer's own thread writes with a connection of its own
def test_the_call_log_writer_survives_a_failing_budget_check(monkeypatch, fake_provider):
    """A budget check that fails after a batch is committed (the database drops the connection) must not kill
    the web worker's call-log thread: before, every later answered call's row piled up in memory, unwritten
    (no call log, no roll-ups, no costs, no budget alerts) until the worker stopped."""
    import time

    from django.db import OperationalError

    from integrations import gateway, usage
    from integrations.context import open_response_scope, reset_response_scope
    from integrations.gateway import batchlog
    from tests.factories import UserFactory

    real, failed = usage.budget_check, []

    def budget_check(**kwargs):
        if not failed:
            failed.append(kwargs)
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(usage, "budget_check", budget_check)  # what the writer's budget_checks calls
    w = batchlog.CallLogWriter(interval=0.02).start()
    monkeypatch.setattr(batchlog, "_writer", w)
    user = UserFactory()

    def answered_call():
        scope, token = open_response_scope()
        try:
            with gateway.attempt("acme", "send", owner=user, log_after_response=True) as att:
                att.record(http_status=200)
        finally:
            scope.run()
            reset_response_scope(token)

    def written(n):
        deadline = time.monotonic() + 5
        while ProviderCall.objects.filter(provider="acme").count() < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return ProviderCall.objects.filter(provider="acme").count()

    try:
        answered_call()
        assert written(1) == 1 and failed
        answered_call()
        assert written(2) == 2
    finally:
        w.stop(timeout=2)


def test_a_token_booked_before_a_429_does_not_call_through_the_providers_retry_after(fake_provider):
    """A task that booked its token (a paced burst of sends) comes back with it prepaid; if the provider has
    since answered 429 with Retry-After, the scope is blocked and that block must hold for it too.

    Before: the prepaid token skipped the limiter and with it the block, so every booked task due inside the
    provider's Retry-After called it anyway (more 429s, the Retry-After broken: "a floor, never cut")."""
    from integrations import gateway, limiter
    from integrations.errors import RateLimited

    limiter.block("acme", "+15550001", 60)  # the provider's 429: Retry-After 60
    with gateway.task_context(attempt=1, prepaid=[("acme", "+15550001")]) as ctx:
        with pytest.raises(RateLimited) as err:
            with gateway.attempt("acme", "send", scope="+15550001") as att:
                att.record(http_status=200)
        assert err.value.retry_after > 59
        # The booking is kept for the task's next run (it is re-sent with it prepaid).
        assert err.value.reserved and ("acme", "+15550001") in ctx.reserved
    assert not ProviderCall.objects.filter(provider="acme", outcome=Outcome.OK).exists()


@pytest.mark.parametrize("header", ["inf", "Infinity", "1e999"])
def test_a_non_finite_retry_after_is_no_hint_not_a_crash(fake_provider, header):
    """Retry-After comes from the network. A value that parses to infinity made the gateway's 429 block
    overflow (OverflowError in limiter.block) inside its failure handling: no call-log row, no
    ProviderRateLimited, and a task that is not retried (an unknown exception) instead of one that waits."""
    import responses

    from integrations.errors import ProviderRateLimited, parse_retry_after
    from tests.integrations import acme

    assert parse_retry_after(header) is None
    with responses.RequestsMock() as http:
        http.post(acme.URL, json={}, status=429, headers={"Retry-After": header})
        with pytest.raises(ProviderRateLimited):
            acme.send({}, scope="+15550001")
    assert ProviderCall.objects.get(provider="acme").outcome == Outcome.RATE_LIMITED


def test_rotating_a_slack_channels_url_in_admin_keeps_the_url_out_of_the_audit_trail(staff_user):
    """A Slack incoming-webhook URL is itself a credential (the admin list shows only its host, for that
    reason). Editing it in admin wrote the old and the new URL, whole, into the append-only audit trail
    (kept 7 years, archived to S3, listed in admin): rotating a leaked URL recorded both for good."""
    from django.test import Client

    from integrations.audit.models import AuditEvent
    from integrations.models import AlertChannel

    old = "https://hooks.slack.com/services/T000/B000/oldSECRETpathTOKEN"
    new = "https://hooks.slack.com/services/T000/B000/newSECRETpathTOKEN"
    channel = AlertChannel.objects.create(name="ops", kind="slack", target=old)
    client = Client()
    client.force_login(staff_user)
    response = client.post(
        f"/admin/integrations/alertchannel/{channel.pk}/change/",
        {"name": "ops", "kind": "slack", "target": new, "secret": "", "min_severity": "warning", "enabled": "on"},
    )
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.target == new
    event = AuditEvent.objects.get(action="admin.alertchannel.change")
    assert "target" in event.details["changes"]  # the change is still recorded: where it pointed
    assert "SECRET" not in str(event.details)


def test_a_slack_channels_url_is_not_put_back_into_its_admin_page_and_blank_keeps_it(staff_user):
    """The list and the audit trail show only the host of a Slack or webhook URL; the change form printed the
    whole URL into its input, for any staff member who opened the channel."""
    from django.test import Client

    from integrations.models import AlertChannel

    url = "https://hooks.slack.com/services/T000/B000/pathSECRETtoken"
    channel = AlertChannel.objects.create(name="ops", kind="slack", target=url)
    client = Client()
    client.force_login(staff_user)
    page = client.get(f"/admin/integrations/alertchannel/{channel.pk}/change/").content.decode()
    assert "SECRET" not in page and "hooks.slack.com" in page  # where it goes, not the credential
    form = {"name": "ops2", "kind": "slack", "target": "", "secret": "", "min_severity": "warning", "enabled": "on"}
    assert client.post(f"/admin/integrations/alertchannel/{channel.pk}/change/", form).status_code == 302
    channel.refresh_from_db()
    assert (channel.name, channel.target) == ("ops2", url)
    # Turning it into an email channel needs addresses: the URL is not kept as one.
    emailed = client.post(f"/admin/integrations/alertchannel/{channel.pk}/change/", {**form, "kind": "email"})
    assert emailed.status_code == 200 and "needs its addresses" in emailed.content.decode()
    channel.refresh_from_db()
    assert channel.kind == "slack" and channel.target == url


def test_an_email_channels_addresses_stay_on_its_admin_page(staff_user):
    from django.test import Client

    from integrations.models import AlertChannel

    channel = AlertChannel.objects.create(name="mail", kind="email", target="ops@example.com")
    client = Client()
    client.force_login(staff_user)
    page = client.get(f"/admin/integrations/alertchannel/{channel.pk}/change/").content.decode()
    assert 'value="ops@example.com"' in page
