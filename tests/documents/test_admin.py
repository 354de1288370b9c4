"""Documents in admin: what staff may change without breaking what the owner sees."""

import os

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages

from documents.models import Document, DocumentVersion
from integrations.audit.models import AuditEvent
from tests.factories import UserFactory

from .helpers import URL, post, post_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def document(user_client):
    return post(user_client, "plan.txt", b"version one\n", "text/plain").json()


def test_staff_cannot_delete_a_version_so_the_owners_download_keeps_working(user_client, client, staff_user, document):
    """Versions are immutable: deleting the current one left the document with no file and its download a 500."""
    version = DocumentVersion.objects.get()
    client.force_login(staff_user)

    assert client.post(f"/admin/documents/documentversion/{version.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(
        "/admin/documents/documentversion/",
        {"action": "delete_selected", "_selected_action": [version.pk], "post": "yes"},
    )

    assert DocumentVersion.objects.filter(pk=version.pk).exists()
    assert user_client.get(f"{URL}{document['id']}/").json()["version"] == 1
    assert user_client.get(f"{URL}{document['id']}/download/").status_code == 200


def stored_files(settings):
    return [os.path.join(d, f) for d, _, files in os.walk(settings.MEDIA_ROOT) for f in files]


def test_staff_delete_a_document_through_the_service_so_its_files_leave_storage(
    user_client, client, staff_user, document, settings, django_capture_on_commit_callbacks
):
    post_version(user_client, document["id"], "plan.txt", b"version two\n", "text/plain")
    assert len(stored_files(settings)) == 2
    client.force_login(staff_user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/documents/document/", {"action": "delete_documents", "_selected_action": [document["id"]]}
        )

    assert response.status_code == 302
    assert "1 document(s) deleted" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert user_client.get(f"{URL}{document['id']}/").status_code == 404
    # the purge ran: no row, and no file left for the orphan sweep to find
    assert not Document.objects.exists() and not DocumentVersion.objects.exists()
    assert stored_files(settings) == []
    assert AuditEvent.objects.filter(action="admin.delete_documents", actor=staff_user).count() == 1


def test_a_document_is_not_offered_a_delete_that_would_only_remove_its_rows(client, staff_user, document):
    """Django's own delete would cascade the rows and leave the files; it is refused outright, not half-offered."""
    client.force_login(staff_user)
    assert client.get(f"/admin/documents/document/{document['id']}/delete/").status_code == 403
    assert client.post(f"/admin/documents/document/{document['id']}/delete/", {"post": "yes"}).status_code == 403
    client.post(
        "/admin/documents/document/",
        {"action": "delete_selected", "_selected_action": [document["id"]], "post": "yes"},
    )
    assert Document.objects.filter(pk=document["id"], state=Document.State.ACTIVE).exists()
    page = client.get("/admin/documents/document/").content.decode()
    assert 'value="delete_selected"' not in page and 'value="delete_documents"' in page


def test_staff_without_the_delete_permission_are_not_offered_the_delete(client, document):
    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_document"))
    client.force_login(clerk)
    assert 'value="delete_documents"' not in client.get("/admin/documents/document/").content.decode()
    client.post("/admin/documents/document/", {"action": "delete_documents", "_selected_action": [document["id"]]})
    assert Document.objects.filter(pk=document["id"], state=Document.State.ACTIVE).exists()
