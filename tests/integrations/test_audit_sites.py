"""Where the audit trail is written: staff actions in admin, clients' sensitive actions in the API."""

from decimal import Decimal

import pytest
from django.test import Client

from integrations import breaker
from integrations.audit.models import AuditEvent
from integrations.models import Alert, Budget, Connection
from tests.integrations.factories import ConnectionFactory, WebhookEventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(staff_user):
    staff_user.is_superuser = True
    staff_user.save()
    client = Client(REMOTE_ADDR="203.0.113.5")
    client.force_login(staff_user)
    return client


def actions():
    return list(AuditEvent.objects.order_by("id").values_list("action", "target_type", "target_id"))


def test_opening_and_closing_a_circuit_is_audited(admin, fake_provider, staff_user):
    admin.post("/admin/integrations/providercall/circuit/", {"provider": "acme", "action": "open"})
    admin.post("/admin/integrations/providercall/circuit/", {"provider": "acme", "action": "close"})
    assert breaker.state("acme") == "closed"
    assert actions() == [("circuit.open", "provider", "acme"), ("circuit.close", "provider", "acme")]
    event = AuditEvent.objects.last()
    assert (event.actor, event.ip) == (staff_user, "203.0.113.5")


def test_replaying_a_webhook_is_audited(admin):
    event = WebhookEventFactory(status="failed")
    admin.post(f"/admin/integrations/webhookevent/{event.pk}/replay/")
    assert actions() == [("webhook.replay", "integrations.webhookevent", str(event.pk))]


def test_a_replay_refused_is_audited_as_denied(admin):
    event = WebhookEventFactory(
        status="processed", payload={}, headers={}, next_attempt_at=None
    )  # retention scrubbed it
    admin.post(f"/admin/integrations/webhookevent/{event.pk}/replay/")
    admin.post("/admin/integrations/webhookevent/", {"action": "replay", "_selected_action": [event.pk]})
    refused = AuditEvent.objects.filter(action="webhook.replay")
    assert [(e.target_id, e.outcome, e.details["error"]) for e in refused] == [
        (str(event.pk), "denied", "replay_refused")
    ] * 2


def test_resolving_and_acknowledging_an_alert_is_audited(admin):
    alert = Alert.objects.create(kind="security", message="x", dedupe_key="k")
    admin.post(f"/admin/integrations/alert/{alert.pk}/act/", {"action": "acknowledge"})
    admin.post(f"/admin/integrations/alert/{alert.pk}/act/", {"action": "resolve"})
    alert.refresh_from_db()
    assert alert.resolved_at is not None and alert.resolved_by is not None
    assert [a for a, _, _ in actions()] == ["alert.acknowledge", "alert.resolve"]


def test_a_budget_edit_in_admin_records_old_and_new_amounts(admin):
    budget = Budget.objects.create(provider="openai", monthly_limit_usd=Decimal("100.00"))
    response = admin.post(
        f"/admin/integrations/budget/{budget.pk}/change/", {"provider": "openai", "monthly_limit_usd": "250.00"}
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="admin.budget.change")
    assert event.details["changes"] == {"monthly_limit_usd": ["100.00", "250.00"]}


def test_a_connection_deleted_in_admin_is_audited_and_its_tokens_never_written(admin):
    conn = ConnectionFactory()
    admin.post(f"/admin/integrations/connection/{conn.pk}/delete/", {"post": "yes"})
    assert not Connection.objects.exists()
    event = AuditEvent.objects.get(action="admin.connection.delete")
    assert event.target_id == str(conn.pk)
    assert "ya29" not in str(event.details) and "refresh-token" not in str(event.details)


def test_a_client_removing_a_connection_is_audited(user_client, user):
    conn = ConnectionFactory(owner=user, access_token="", refresh_token="")
    assert user_client.delete(f"/api/v1/connections/{conn.pk}/").status_code == 200
    event = AuditEvent.objects.get(action="connection.remove")
    assert (event.actor, event.target_id) == (user, str(conn.pk))


def test_audit_ip_honours_only_trusted_proxies(rf, settings, user):
    from integrations.audit.services import audit_record

    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7")
    request.user = user
    settings.TRUSTED_PROXY_COUNT = 0
    assert audit_record(action="x", request=request).ip == "10.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 1
    assert audit_record(action="x", request=request).ip == "203.0.113.7"


class TestBeatSchedule:
    """The beat schedule's actions and edits are staff actions like any other: each is audited and in history."""

    URL = "/admin/django_celery_beat/periodictask/"

    @pytest.fixture
    def task(self):
        from django_celery_beat.models import IntervalSchedule, PeriodicTask

        every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
        return PeriodicTask.objects.create(name="alerts", task="integrations.alerts_evaluate", interval=every)

    def test_disabling_a_task_is_audited_and_logged(self, admin, staff_user, task):
        from django.contrib.admin.models import LogEntry

        admin.post(self.URL, {"action": "disable_tasks", "_selected_action": [task.pk]})

        task.refresh_from_db()
        assert task.enabled is False
        event = AuditEvent.objects.get(action="admin.disable_tasks")
        assert (event.actor, event.target_type, event.target_id, event.outcome, event.ip) == (
            staff_user,
            "django_celery_beat.periodictask",
            str(task.pk),
            "ok",
            "203.0.113.5",
        )
        assert LogEntry.objects.filter(object_id=str(task.pk), user=staff_user).exists()

    def test_running_a_task_that_is_not_registered_is_audited_as_denied(self, admin, task):
        task.task = "integrations.no_such_task"
        task.save()
        admin.post(self.URL, {"action": "run_tasks", "_selected_action": [task.pk]})
        event = AuditEvent.objects.get(action="admin.run_tasks")
        assert (event.outcome, event.details["error"]) == ("denied", "task_not_found")

    def test_an_edit_records_old_and_new_values(self, admin, task):
        response = admin.post(
            f"{self.URL}{task.pk}/change/",
            {
                "name": "alerts",
                "regtask": "integrations.alerts_evaluate",
                "task": "integrations.alerts_evaluate",
                "interval": task.interval_id,
                "args": "[]",
                "kwargs": "{}",
                "headers": "{}",
            },
        )
        assert response.status_code == 302, response.content[:2000]
        event = AuditEvent.objects.get(action="admin.periodictask.change")
        assert event.details["changes"]["enabled"] == [True, False]


def test_the_trail_names_an_alert_by_id_not_by_its_message(admin, settings):
    """The lockout alert quotes a user name; the trail, kept for years and never redacted, must not copy it."""
    settings.AXES_FAILURE_LIMIT = 3
    client = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(4):
        client.post(
            "/api/v1/auth/token/", {"username": "mallory", "password": "wrong"}, content_type="application/json"
        )
    alert = Alert.objects.get(kind=Alert.Kind.SECURITY)
    assert "mallory" in alert.message

    admin.post(f"/admin/integrations/alert/{alert.pk}/act/", {"action": "acknowledge"})
    admin.post("/admin/integrations/alert/", {"action": "resolve_selected", "_selected_action": [alert.pk]})

    events = AuditEvent.objects.filter(action__startswith="alert.").order_by("id")
    assert [e.target_label for e in events if "mallory" in f"{e.target_label} {e.details}"] == []
    assert [(e.action, e.target_type, e.target_id, e.details) for e in events] == [
        ("alert.acknowledge", "integrations.alert", str(alert.pk), {"kind": "security"}),
        ("alert.resolve", "integrations.alert", str(alert.pk), {"kind": "security"}),
    ]
