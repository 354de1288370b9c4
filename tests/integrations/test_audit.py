"""The audit trail is append-only: not in admin, not in the ORM, and on PostgreSQL not even in SQL."""

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from integrations.audit.models import AuditArchive, AuditEvent
from integrations.audit.services import audit_record
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_an_event_records_who_what_target_and_where(rf):
    staff = UserFactory(is_staff=True, username="alice")
    request = rf.post("/admin/x", REMOTE_ADDR="203.0.113.9")
    request.user, request.request_id = staff, "req-1"
    target = UserFactory(username="bob")
    event = audit_record(action="user.impersonate", request=request, target=target, reason="support ticket")
    event.refresh_from_db()
    assert (event.actor, event.actor_label, event.action) == (staff, "staff:alice", "user.impersonate")
    assert (event.target_type, event.target_id, event.target_label) == ("auth.user", str(target.pk), "bob")
    assert (event.ip, event.request_id, event.details) == ("203.0.113.9", "req-1", {"reason": "support ticket"})


def test_the_orm_refuses_to_change_or_delete_an_event():
    event = audit_record(action="circuit.close", target=("provider", "stripe"))
    event.action = "something.else"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    assert AuditEvent.objects.get().action == "circuit.close"


def test_deleting_the_actor_keeps_the_event():
    user = UserFactory(username="carol")
    audit_record(action="document.download", actor=user, target=("document", "7"))
    user.delete()
    event = AuditEvent.objects.get()
    assert event.actor_id is not None and event.actor_label == "user:carol"


@pytest.mark.postgres
def test_postgresql_rejects_update_and_delete_even_in_raw_sql():
    audit_record(action="payment.refund", target=("refund", "1"))
    for statement in ("UPDATE audit_auditevent SET action = 'x'", "DELETE FROM audit_auditevent"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(statement)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.all().delete()  # the queryset path is refused too
    assert AuditEvent.objects.get().action == "payment.refund"


@pytest.mark.postgres
def test_pruning_needs_the_transactions_say_so_and_a_verified_archive():
    event = audit_record(action="payment.refund", target=("refund", "1"))
    AuditArchive.objects.create(
        day=event.at.date(), bucket="b", key="k", first_id=event.pk, last_id=event.pk, rows=1, bytes=1, sha256="0"
    )
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL hub.audit_prune = 'on'")
        cur.execute("DELETE FROM audit_auditevent")  # the archive is not verified yet
    AuditArchive.objects.update(verified_at=timezone.now())
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL hub.audit_prune = 'on'")
        cur.execute("DELETE FROM audit_auditevent")
    assert not AuditEvent.objects.exists()


def test_admin_offers_no_add_change_or_delete(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    event = audit_record(action="circuit.close", actor=staff, target=("provider", "stripe"))
    assert client.get("/admin/audit/auditevent/").status_code == 200
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    page = client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client.post(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403


def test_key_rotation_is_audited():
    call_command("rotate_encryption_keys")
    assert AuditEvent.objects.filter(action="encryption.rotate_keys", actor_label="system").count() == 1
