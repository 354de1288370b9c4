"""Issuing a document's signed download link (which is also how a file is shared) is audited."""

import pytest

from integrations.audit.models import AuditEvent

from .helpers import URL, post

pytestmark = pytest.mark.django_db


def test_a_download_link_is_audited_with_the_version(user_client, user):
    doc = post(user_client, "plan.txt", b"version one\n", "text/plain").json()
    assert user_client.get(f"{URL}{doc['id']}/download/").status_code == 200
    event = AuditEvent.objects.get(action="document.download")
    assert (event.actor, event.target_type, event.target_id) == (user, "documents.document", str(doc["id"]))
    assert event.details == {"version": 1}


def test_another_users_document_is_404_and_nothing_is_audited(user_client, client_for, other_user):
    doc = post(client_for(other_user), "plan.txt", b"x\n", "text/plain").json()
    assert user_client.get(f"{URL}{doc['id']}/download/").status_code == 404
    assert not AuditEvent.objects.filter(action="document.download").exists()
