"""Staff remove an account in admin by erasing it: deleting the user row would leave the user's files and grants."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from integrations.audit.models import AuditEvent
from privacy.models import Erasure
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


def test_a_user_cannot_be_deleted_in_admin(admin_client, user):
    assert admin_client.get(f"/admin/auth/user/{user.pk}/delete/").status_code == 403
    assert admin_client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"}).status_code == 403
    response = admin_client.post(
        "/admin/auth/user/", {"action": "delete_selected", "_selected_action": [user.pk], "post": "yes"}
    )
    user.refresh_from_db()  # still there: the action is not offered
    assert response.status_code in (200, 302)
    assert "delete_selected" not in admin_client.get("/admin/auth/user/").content.decode()


def test_staff_erase_a_user_from_the_user_list(admin_client, user):
    response = admin_client.post("/admin/auth/user/", {"action": "erase", "_selected_action": [user.pk]})

    assert response.status_code == 302
    assert "1 erasure(s) requested" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    erasure = Erasure.objects.get(subject_id=user.pk)
    assert erasure.status == Erasure.Status.SCHEDULED and erasure.requested_by_staff
    user.refresh_from_db()
    assert user.is_active is False  # deactivated at once; the rows go after the grace period
    assert AuditEvent.objects.filter(action="privacy.erase").exists()


def test_staff_without_the_delete_permission_are_not_offered_the_erasure(user):
    from django.contrib.auth.models import Permission

    clerk = UserFactory(is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = Client()
    client.force_login(clerk)
    assert 'value="erase"' not in client.get("/admin/auth/user/").content.decode()
    client.post("/admin/auth/user/", {"action": "erase", "_selected_action": [user.pk]})
    assert not Erasure.objects.exists()
