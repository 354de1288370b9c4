"""Documents in admin: what staff may change without breaking what the owner sees."""

import pytest

from documents.models import DocumentVersion

from .helpers import URL, post

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
