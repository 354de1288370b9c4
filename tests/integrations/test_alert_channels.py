"""Alerts reach people: email, Slack and signed-webhook channels, once per alert, reminders, resolution."""

import datetime as dt
import json
import threading

import httpx
import pytest
import respx
from django.core import mail
from django.db import connection
from django.utils import timezone

from integrations import breaker
from integrations.alerting.channels import SIGNATURE_HEADER, verify_signature
from integrations.alerting.notify import deliveries_requeue, delivery_send, reminders_send
from integrations.alerting.tasks import alert_deliver
from integrations.alerts import alert_raise, alert_resolve
from integrations.errors import CircuitOpen, ProviderUnavailable
from integrations.models import Alert, AlertChannel, AlertDelivery, ProviderCall

pytestmark = pytest.mark.django_db
SLACK = "https://hooks.slack.example/services/T000/B000/XXXX"
HOOK = "https://receiver.example/hub-alerts"
SECRET = "alert-signing-secret-123"
Notice, Status = AlertDelivery.Notice, AlertDelivery.Status


@pytest.fixture
def run_tasks(django_capture_on_commit_callbacks):
    """Deliveries queued on commit are sent in-process, retries included."""
    from config.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


@pytest.fixture
def fast_retries(settings):
    fast = {"base": 0.001, "cap": 0.001, "max_retries": 3}
    settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "alert_webhook": fast, "email": fast}


def raise_alert(message="stripe: 12 of 20 calls failed", severity=Alert.Severity.CRITICAL, kind=None):
    return alert_raise(
        kind=kind or Alert.Kind.PROVIDER_FAILURE_RATE, provider="stripe", severity=severity, message=message
    )


def test_an_alert_is_emailed_once_however_often_it_recurs(settings, django_capture_on_commit_callbacks, run_tasks):
    settings.ALERT_EMAIL_TO = ["ops@example.com", "oncall@example.com"]
    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert()
    with django_capture_on_commit_callbacks(execute=True):
        raise_alert("stripe: 15 of 20 calls failed")
        raise_alert("stripe: 18 of 20 calls failed")

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com", "oncall@example.com"]
    assert "ALERT critical stripe" in message.subject and "12 of 20" in message.body
    delivery = AlertDelivery.objects.get()
    assert (delivery.alert, delivery.notice, delivery.status, delivery.attempts) == (
        alert,
        Notice.OPENED,
        Status.SENT,
        1,
    )
    assert ProviderCall.objects.filter(provider="email", outcome="ok").count() == 1


def test_slack_gets_a_text_message(settings, django_capture_on_commit_callbacks, run_tasks):
    settings.ALERT_SLACK_WEBHOOK_URL = SLACK
    with respx.mock() as router:
        route = router.post(SLACK).mock(return_value=httpx.Response(200, text="ok"))
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert()
    body = json.loads(route.calls.last.request.content)
    assert body["text"].startswith("*[hub] ALERT critical stripe: provider_failure_rate*")
    assert "12 of 20" in body["text"]
    assert ProviderCall.objects.get(provider="alert_webhook").operation == "slack.post"


def test_the_generic_webhook_is_signed_so_the_receiver_can_verify_it(
    settings, django_capture_on_commit_callbacks, run_tasks
):
    settings.ALERT_WEBHOOK_URL, settings.ALERT_WEBHOOK_SECRET = HOOK, SECRET
    with respx.mock() as router:
        route = router.post(HOOK).mock(return_value=httpx.Response(204))
        with django_capture_on_commit_callbacks(execute=True):
            alert = raise_alert()
    request = route.calls.last.request
    header = request.headers[SIGNATURE_HEADER]
    assert header.startswith("t=") and ",v1=" in header
    assert verify_signature(SECRET, request.content, header)
    assert not verify_signature("another-secret", request.content, header)
    assert not verify_signature(SECRET, request.content.replace(b"stripe", b"strype"), header)
    payload = json.loads(request.content)
    assert payload["notice"] == "opened" and payload["alert"]["id"] == alert.pk
    assert payload["alert"]["severity"] == "critical"


def test_a_failed_delivery_is_retried_until_it_goes_through(settings, fast_retries):
    settings.ALERT_WEBHOOK_URL, settings.ALERT_WEBHOOK_SECRET = HOOK, SECRET
    alert = raise_alert()
    delivery = AlertDelivery.objects.get(alert=alert)
    with respx.mock() as router:
        router.post(HOOK).mock(side_effect=[httpx.Response(503), httpx.ConnectError("refused"), httpx.Response(200)])
        alert_deliver.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.SENT, 3)
    outcomes = list(
        ProviderCall.objects.filter(provider="alert_webhook").order_by("id").values_list("outcome", flat=True)
    )
    assert outcomes == ["error", "error", "ok"]


def test_a_refusal_is_not_retried_and_the_delivery_is_left_failed(settings, fast_retries):
    settings.ALERT_WEBHOOK_URL, settings.ALERT_WEBHOOK_SECRET = HOOK, SECRET
    delivery = AlertDelivery.objects.get(alert=raise_alert())
    with respx.mock() as router:
        route = router.post(HOOK).mock(return_value=httpx.Response(404, text="no such hook"))
        alert_deliver.apply(args=[delivery.pk])
    delivery.refresh_from_db()
    assert route.call_count == 1
    assert delivery.status == Status.FAILED and "no such hook" in delivery.last_error


def test_a_dead_receiver_opens_only_its_own_channels_circuit(settings, admin_client):
    """Each channel is its own receiver: one that is down trips its own breaker, and the others still hear of
    alerts (one breaker for every Slack and webhook channel let a dead receiver silence the healthy ones)."""
    settings.CIRCUIT_BREAKER = {"failure_threshold": 2, "cooldown_seconds": 600, "probe_timeout_seconds": 5}
    dead_url, healthy_url = "https://dead.example/hook", "https://alive.example/hook"
    dead = AlertChannel.objects.create(name="dead", kind="webhook", target=dead_url, secret=SECRET)
    healthy = AlertChannel.objects.create(name="alive", kind="slack", target=healthy_url)
    alert = raise_alert()
    to_dead = AlertDelivery.objects.get(alert=alert, channel_key=dead.key)
    to_healthy = AlertDelivery.objects.get(alert=alert, channel_key=healthy.key)

    with respx.mock() as router:
        router.post(dead_url).mock(return_value=httpx.Response(503))
        alive = router.post(healthy_url).mock(return_value=httpx.Response(200, text="ok"))
        for _ in range(2):
            with pytest.raises(ProviderUnavailable):
                delivery_send(delivery_id=to_dead.pk)
        with pytest.raises(CircuitOpen):
            delivery_send(delivery_id=to_dead.pk)
        delivery_send(delivery_id=to_healthy.pk)

    assert alive.call_count == 1
    to_healthy.refresh_from_db()
    assert to_healthy.status == Status.SENT
    assert breaker.state(f"alert_webhook:{dead.key}") == "open"
    assert breaker.state(f"alert_webhook:{healthy.key}") == "closed"
    # Staff see which channel's breaker is open in the channel list.
    page = admin_client.get("/admin/integrations/alertchannel/").content.decode()
    assert page.count('<td class="field-circuit">Open</td>') == 1
    assert page.count('<td class="field-circuit">Closed</td>') == 1
    # The call log names the channel each call went to.
    assert set(ProviderCall.objects.values_list("scope", "outcome")) == {
        (dead.key, "error"),
        (dead.key, "circuit_open"),
        (healthy.key, "ok"),
    }


def test_the_consoles_open_and_close_of_the_alert_webhooks_act_on_every_channel(settings, admin_client):
    """Each channel has its own breaker, so the console's switch for "alert_webhook" sets every channel's: staff who
    open it to stop alert posts stop them all, and closing frees them all."""
    settings.ALERT_SLACK_WEBHOOK_URL = SLACK
    hook = AlertChannel.objects.create(name="ops hook", kind="webhook", target="https://hook.example/a", secret=SECRET)
    delivery = AlertDelivery.objects.get(alert=raise_alert(), channel_key=hook.key)
    circuits = ["alert_webhook", "alert_webhook:settings:slack", f"alert_webhook:{hook.key}"]

    admin_client.post("/admin/integrations/providercall/circuit/", {"provider": "alert_webhook", "action": "open"})
    assert [breaker.state(name) for name in circuits] == ["open"] * 3
    with respx.mock(assert_all_called=False) as router:
        route = router.post("https://hook.example/a").mock(return_value=httpx.Response(200))
        with pytest.raises(CircuitOpen):
            delivery_send(delivery_id=delivery.pk)
        assert not route.called

    admin_client.post("/admin/integrations/providercall/circuit/", {"provider": "alert_webhook", "action": "close"})
    assert [breaker.state(name) for name in circuits] == ["closed"] * 3


def test_resolving_tells_the_channels_that_heard_of_it(settings, django_capture_on_commit_callbacks, run_tasks):
    settings.ALERT_EMAIL_TO = ["ops@example.com"]
    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert()
    with django_capture_on_commit_callbacks(execute=True):
        alert_resolve(alert=alert)
        alert_resolve(alert=alert)  # a second resolve sends nothing more
    assert [m.subject.split("]")[1].split()[0] for m in mail.outbox] == ["ALERT", "RESOLVED"]
    assert AlertDelivery.objects.filter(notice=Notice.RESOLVED).count() == 1


def test_an_alert_still_open_after_n_hours_is_reminded_once_per_period(settings):
    settings.ALERT_EMAIL_TO = ["ops@example.com"]
    settings.ALERT_REMINDER_HOURS = 4
    alert = raise_alert()
    now = timezone.now()
    assert reminders_send(now=now + dt.timedelta(hours=3)) == 0
    assert reminders_send(now=now + dt.timedelta(hours=5)) == 1
    assert reminders_send(now=now + dt.timedelta(hours=6)) == 0  # the clock restarted at the reminder
    assert reminders_send(now=now + dt.timedelta(hours=9, minutes=1)) == 1
    reminders = AlertDelivery.objects.filter(alert=alert, notice=Notice.REMINDER).order_by("sequence")
    assert list(reminders.values_list("sequence", flat=True)) == [1, 2]
    alert_resolve(alert=alert)
    assert reminders_send(now=now + dt.timedelta(hours=20)) == 0


def test_an_acknowledged_alert_is_not_reminded_while_an_unacknowledged_one_is(settings, admin_client):
    """Acknowledging is how staff say "someone has it": paging them again every few hours is noise."""
    settings.ALERT_EMAIL_TO = ["ops@example.com"]
    settings.ALERT_REMINDER_HOURS = 4
    taken = raise_alert()
    untaken = alert_raise(
        kind=Alert.Kind.QUEUE_BACKLOG, severity=Alert.Severity.CRITICAL, message="queue depth", dedupe_key="q"
    )
    admin_client.post("/admin/integrations/alert/", {"action": "acknowledge_selected", "_selected_action": [taken.pk]})
    taken.refresh_from_db()
    assert taken.acknowledged_at is not None

    assert reminders_send(now=timezone.now() + dt.timedelta(hours=5)) == 1
    reminded = AlertDelivery.objects.filter(notice=Notice.REMINDER)
    assert list(reminded.values_list("alert", flat=True)) == [untaken.pk]
    # Still open, still acknowledged: it is resolved when it is back under (and the channels hear of that).
    alert_resolve(alert=taken)
    assert AlertDelivery.objects.filter(alert=taken, notice=Notice.RESOLVED).count() == 1


def _subjects():
    return [m.subject.split("] ")[1] for m in mail.outbox]


def test_a_reminder_queued_before_staff_acknowledge_is_not_sent(
    settings, admin_client, django_capture_on_commit_callbacks, run_tasks
):
    """The reminder was queued while nobody had the alert; its task runs after staff acknowledged it (the queue
    was slow, the first try failed, the sweep picked it up): paging them then is the noise Acknowledge stops."""
    settings.ALERT_EMAIL_TO = ["ops@example.com"]
    settings.ALERT_REMINDER_HOURS = 4
    with django_capture_on_commit_callbacks(execute=True):
        taken = raise_alert()
        untaken = alert_raise(
            kind=Alert.Kind.QUEUE_BACKLOG, severity=Alert.Severity.CRITICAL, message="queue depth", dedupe_key="q"
        )
    mail.outbox.clear()
    with django_capture_on_commit_callbacks() as queued:
        assert reminders_send(now=timezone.now() + dt.timedelta(hours=5)) == 2
    admin_client.post("/admin/integrations/alert/", {"action": "acknowledge_selected", "_selected_action": [taken.pk]})

    for callback in queued:
        callback()

    assert _subjects() == ["STILL OPEN critical: queue_backlog"]
    skipped = AlertDelivery.objects.get(alert=taken, notice=Notice.REMINDER)
    assert skipped.status == Status.SKIPPED and skipped.sent_at is None and skipped.next_attempt_at is None
    assert skipped.last_error.startswith("Not sent: the alert was acknowledged at ")
    assert AlertDelivery.objects.get(alert=untaken, notice=Notice.REMINDER).status == Status.SENT
    # Staff see it, and why, in the deliveries list; the sweep leaves it alone.
    page = admin_client.get("/admin/integrations/alertdelivery/", {"status__exact": "skipped"}).content.decode()
    assert "Skipped (alert taken)" in page and "the alert was acknowledged at" in page
    assert deliveries_requeue(now=timezone.now() + dt.timedelta(hours=1)) == 0
    # Its resolution still reaches the channel.
    with django_capture_on_commit_callbacks(execute=True):
        alert_resolve(alert=taken)
    assert _subjects()[-1] == "RESOLVED critical stripe: provider_failure_rate"


def test_a_reminder_whose_alert_resolved_before_it_went_out_is_not_sent(
    settings, django_capture_on_commit_callbacks, run_tasks
):
    settings.ALERT_EMAIL_TO = ["ops@example.com"]
    settings.ALERT_REMINDER_HOURS = 4
    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert()
    with django_capture_on_commit_callbacks() as queued:
        assert reminders_send(now=timezone.now() + dt.timedelta(hours=5)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        alert_resolve(alert=alert)  # back under its threshold: the hub resolves it itself

    for callback in queued:
        callback()

    assert _subjects() == [
        "ALERT critical stripe: provider_failure_rate",
        "RESOLVED critical stripe: provider_failure_rate",
    ]
    reminder = AlertDelivery.objects.get(alert=alert, notice=Notice.REMINDER)
    assert reminder.status == Status.SKIPPED and "the alert was resolved at " in reminder.last_error


def test_a_reminder_another_run_is_posting_is_left_to_that_run(settings):
    """Skipping it under that run would mark a reminder "not sent" that the receiver got."""
    from tests.integrations.factories import AlertDeliveryFactory

    settings.ALERT_EMAIL_TO = ["ops@example.com"]
    posting = AlertDeliveryFactory(notice=Notice.REMINDER, sequence=1, claimed_at=timezone.now())
    Alert.objects.filter(pk=posting.alert_id).update(acknowledged_at=timezone.now())
    delivery_send(delivery_id=posting.pk)
    posting.refresh_from_db()
    assert (posting.status, posting.last_error) == (Status.PENDING, "") and mail.outbox == []


def test_an_acknowledged_alerts_opening_notice_still_goes_out(settings, admin_client, run_tasks):
    """Acknowledge stops reminders only: a channel still hears of each alert opening (and later of its end)."""
    settings.ALERT_EMAIL_TO = ["ops@example.com"]
    alert = raise_alert()  # its notice's task has not run yet
    admin_client.post("/admin/integrations/alert/", {"action": "acknowledge_selected", "_selected_action": [alert.pk]})
    alert_deliver.delay(AlertDelivery.objects.get(alert=alert).pk)
    assert _subjects() == ["ALERT critical stripe: provider_failure_rate"]


def test_channels_hear_only_the_severities_and_kinds_they_asked_for(settings):
    settings.ALERT_EMAIL_TO = ["ops@example.com"]
    settings.ALERT_MIN_SEVERITY = "critical"
    AlertChannel.objects.create(
        name="payments team", kind="email", target="pay@example.com", min_severity="info", kinds=["dispute"]
    )
    raise_alert(severity=Alert.Severity.WARNING)
    assert not AlertDelivery.objects.exists()
    alert_raise(kind=Alert.Kind.DISPUTE, severity=Alert.Severity.INFO, message="a dispute", dedupe_key="d1")
    assert list(AlertDelivery.objects.values_list("channel_key", flat=True)) == [
        f"channel:{AlertChannel.objects.get().pk}"
    ]


def test_a_delivery_whose_task_was_lost_is_sent_again_by_the_sweep(settings, run_tasks):
    settings.ALERT_EMAIL_TO = ["ops@example.com"]
    raise_alert()  # its task was "lost": the on-commit callback never ran
    assert mail.outbox == []
    assert deliveries_requeue(now=timezone.now() + dt.timedelta(seconds=1)) == 1
    assert len(mail.outbox) == 1 and AlertDelivery.objects.get().status == Status.SENT
    assert deliveries_requeue(now=timezone.now() + dt.timedelta(hours=1)) == 0


def test_a_delivery_to_a_removed_channel_fails_without_calling_anyone(settings):
    channel = AlertChannel.objects.create(name="old", kind="email", target="old@example.com")
    delivery = AlertDelivery.objects.get(alert=raise_alert())
    channel.delete()
    delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == Status.FAILED and mail.outbox == []


def test_a_failed_send_records_its_error_on_the_delivery(settings):
    settings.ALERT_WEBHOOK_URL, settings.ALERT_WEBHOOK_SECRET = HOOK, SECRET
    delivery = AlertDelivery.objects.get(alert=raise_alert())
    with respx.mock() as router:
        router.post(HOOK).mock(return_value=httpx.Response(502, text="bad gateway"))
        with pytest.raises(ProviderUnavailable):
            delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == Status.PENDING and delivery.attempts == 1 and "bad gateway" in delivery.last_error


class TestResendFromAdmin:
    """Staff send a failed notice again from the admin once the channel is fixed; each resend is audited."""

    URL = "/admin/integrations/alertdelivery/"

    def _resend(self, admin_client, *rows):
        return admin_client.post(self.URL, {"action": "resend", "_selected_action": [r.pk for r in rows]}, follow=True)

    def test_a_failed_delivery_is_sent_again_with_fresh_attempts_and_an_audit_event(
        self, admin_client, settings, django_capture_on_commit_callbacks, run_tasks
    ):
        from integrations.audit.models import AuditEvent
        from tests.integrations.factories import AlertDeliveryFactory

        settings.ALERT_EMAIL_TO = ["ops@example.com"]
        failed = AlertDeliveryFactory(status=Status.FAILED, attempts=5, last_error="SMTP refused")

        with django_capture_on_commit_callbacks(execute=True):
            response = self._resend(admin_client, failed)

        assert response.status_code == 200
        failed.refresh_from_db()
        assert (failed.status, failed.attempts, failed.last_error) == (Status.SENT, 1, "")
        assert len(mail.outbox) == 1 and "queue depth 500" in mail.outbox[0].body
        event = AuditEvent.objects.get(action="admin.resend")
        assert (event.target_type, event.target_id, event.outcome) == (
            "integrations.alertdelivery",
            str(failed.pk),
            "ok",
        )

    def test_only_failed_deliveries_to_live_channels_are_sent_again(self, admin_client, settings, run_tasks):
        from integrations.audit.models import AuditEvent
        from tests.integrations.factories import AlertDeliveryFactory

        settings.ALERT_EMAIL_TO = ["ops@example.com"]
        sent = AlertDeliveryFactory(status=Status.SENT, attempts=1)
        pending = AlertDeliveryFactory(status=Status.PENDING)
        orphan = AlertDeliveryFactory(status=Status.FAILED, channel_key="channel:999")

        response = self._resend(admin_client, sent, pending, orphan)

        assert b"Only a failed delivery can be sent again" in response.content
        assert b"enable the channel first" in response.content
        assert len(mail.outbox) == 0
        assert {d.status for d in AlertDelivery.objects.filter(pk__in=[sent.pk, pending.pk, orphan.pk])} == {
            Status.SENT,
            Status.PENDING,
            Status.FAILED,
        }
        assert AuditEvent.objects.filter(action="admin.resend", outcome="denied").count() == 3

    def test_a_resend_that_fails_again_is_left_failed_for_the_next_try(
        self, admin_client, settings, django_capture_on_commit_callbacks, run_tasks, fast_retries
    ):
        from tests.integrations.factories import AlertDeliveryFactory

        channel = AlertChannel.objects.create(name="hook", kind="webhook", target=HOOK, secret=SECRET)
        failed = AlertDeliveryFactory(status=Status.FAILED, channel_key=channel.key)
        with respx.mock() as router:
            router.post(HOOK).mock(return_value=httpx.Response(400, text="bad"))
            with django_capture_on_commit_callbacks(execute=True):
                self._resend(admin_client, failed)
        failed.refresh_from_db()
        assert failed.status == Status.FAILED and failed.attempts == 1 and failed.last_error


class TestTestAlertFromAdmin:
    """ "Send a test alert" checks the channels staff selected: only those hear of it, once per click, audited."""

    URL = "/admin/integrations/alertchannel/"

    def test_only_the_selected_channels_get_it_once_and_no_reminder_follows(
        self, staff_user, settings, django_capture_on_commit_callbacks, run_tasks
    ):
        from django.test import Client

        settings.ALERT_EMAIL_TO, settings.ALERT_MIN_SEVERITY = ["ops@example.com"], "info"
        chosen = AlertChannel.objects.create(
            name="chosen", kind="email", target="chosen@example.com", min_severity="info"
        )
        AlertChannel.objects.create(name="other", kind="email", target="other@example.com", min_severity="info")
        admin = Client()
        admin.force_login(staff_user)

        for _ in range(2):
            with django_capture_on_commit_callbacks(execute=True):
                admin.post(self.URL, {"action": "send_test", "_selected_action": [chosen.pk]})

        assert [m.to for m in mail.outbox] == [["chosen@example.com"], ["chosen@example.com"]]
        assert reminders_send(now=timezone.now() + dt.timedelta(hours=settings.ALERT_REMINDER_HOURS + 1)) == 0

    def test_each_channel_tested_is_audited(self, staff_user, run_tasks):
        from django.contrib.admin.models import LogEntry
        from django.test import Client

        from integrations.audit.models import AuditEvent

        channel = AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com")
        admin = Client()
        admin.force_login(staff_user)
        admin.post(self.URL, {"action": "send_test", "_selected_action": [channel.pk]})

        event = AuditEvent.objects.get(action="admin.send_test")
        assert (event.actor, event.target_type, event.target_id) == (
            staff_user,
            "integrations.alertchannel",
            str(channel.pk),
        )
        assert LogEntry.objects.filter(object_id=str(channel.pk), user=staff_user).exists()


def test_marking_the_last_failed_webhook_of_a_kind_ignored_resolves_its_alert(admin_client):
    from tests.integrations.factories import WebhookEventFactory

    first, second = WebhookEventFactory.create_batch(2, status="failed", next_attempt_at=None)
    alert = alert_raise(
        kind=Alert.Kind.WEBHOOK_FAILED,
        provider=first.provider,
        message="2 failed",
        dedupe_key=f"webhook_failed:{first.provider}:{first.type}",
    )

    def ignore(event):
        admin_client.post(
            "/admin/integrations/webhookevent/", {"action": "mark_ignored", "_selected_action": [event.pk]}
        )
        alert.refresh_from_db()

    ignore(first)
    assert alert.resolved_at is None  # the other one still needs a replay
    ignore(second)
    assert alert.resolved_at is not None and alert.resolved_by is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_sends_of_the_same_notice_at_once_post_it_once():
    """A backlog: the notice's task is slow to start, the sweep sends it again (or the broker redelivers it), and
    two workers run delivery_send for the same row while the first is still waiting on the receiver. Only the
    run that claimed the row may post it; the other leaves it, however the two interleave."""
    channel = AlertChannel.objects.create(name="hook", kind="webhook", target=HOOK, secret=SECRET)
    delivery = AlertDelivery.objects.get(alert=raise_alert(), channel_key=channel.key)
    inside, release = threading.Event(), threading.Event()
    posts = []

    def receiver(request):
        posts.append(request)
        if len(posts) == 1:
            inside.set()
            release.wait(10)
        return httpx.Response(204)

    errors = []

    def run():
        try:
            delivery_send(delivery_id=delivery.pk)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    with respx.mock() as router:
        router.post(HOOK).mock(side_effect=receiver)
        first = threading.Thread(target=run)
        first.start()
        assert inside.wait(10)
        second = threading.Thread(target=run)
        second.start()
        second.join(10)
        release.set()
        first.join(10)

    assert errors == []
    assert len(posts) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.SENT, 1)
