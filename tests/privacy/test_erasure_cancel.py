"""Cancelling a pending erasure during its grace period (issue 14): the account comes back, nothing was
deleted, and what the immediate part revoked stays revoked."""

import datetime as dt

import pytest
import responses
import time_machine
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.audit.models import AuditEvent
from integrations.models import ApiToken, Connection
from privacy.models import Erasure
from tests.integrations.factories import ConnectionFactory

from .factories import ErasureFactory

pytestmark = pytest.mark.django_db

GOOGLE_REVOKE = "https://oauth2.googleapis.com/revoke"
PASSWORD = "correct horse battery staple"
CANCEL = "/api/v1/privacy/erase/cancel/"


@pytest.fixture
def erased(user, client_for, http, django_capture_on_commit_callbacks):
    """`user` asked to be erased: deactivated, token and Google grant revoked, deletion waiting 7 days."""
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    ConnectionFactory(owner=user)
    client = client_for(user)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/api/v1/privacy/erase/", {"password": PASSWORD}, format="json").status_code == 202
    user.refresh_from_db()
    assert not user.is_active
    return client


def _cancel(data, client=None, ip="203.0.113.9"):
    return (client or APIClient(REMOTE_ADDR=ip)).post(CANCEL, data, format="json")


def test_the_user_cancels_with_username_and_password_and_can_sign_in_again(user, erased):
    response = _cancel({"username": user.username, "password": PASSWORD})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "cancelled" and "stay revoked" in body["not_restored"]
    user.refresh_from_db()
    assert user.is_active
    # The token the erasure revoked stays revoked; a fresh login gives a new one.
    assert erased.get("/api/v1/privacy/exports/").status_code == 401
    assert not ApiToken.objects.filter(user=user).exists() and not Connection.objects.filter(owner=user).exists()
    login = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")
    assert login.status_code == 200
    event = AuditEvent.objects.get(action="privacy.erase.cancel")
    assert (event.actor_id, event.target_id, event.outcome) == (user.pk, str(user.pk), "ok")


def test_a_cancelled_erasure_never_runs_and_a_new_request_starts_afresh(user, erased, http):
    erasure_id = _cancel({"username": user.username, "password": PASSWORD}).json()["id"]
    with time_machine.travel(timezone.now() + dt.timedelta(days=8)):
        from privacy.erasure import erasure_run, erasures_enqueue_due

        assert erasures_enqueue_due() == 0
        assert erasure_run(erasure_id=erasure_id) is None
    assert get_user_model().objects.filter(pk=user.pk, is_active=True).exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + _token(user))
    again = client.post("/api/v1/privacy/erase/", {"password": PASSWORD}, format="json")
    assert again.status_code == 202 and again.json()["id"] != erasure_id


def _token(user):
    login = APIClient().post("/api/v1/auth/token/", {"username": user.username, "password": PASSWORD}, format="json")
    return login.json()["token"]


def test_a_wrong_password_changes_nothing_and_is_counted_like_a_failed_login(user, erased, settings):
    response = _cancel({"username": user.username, "password": "wrong"})

    assert response.status_code == 403 and response.json()["error"] == "password_incorrect"
    user.refresh_from_db()
    assert not user.is_active and Erasure.objects.get().status == "scheduled"
    assert AuditEvent.objects.filter(action="privacy.erase.cancel", outcome="denied").exists()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _cancel({"username": user.username, "password": "wrong"})
    # Locked out like the login endpoint: even the right password waits for the cool-off.
    locked = _cancel({"username": user.username, "password": PASSWORD})
    assert locked.status_code == 429 and locked.json()["error"] == "login_locked" and locked["Retry-After"]
    assert Erasure.objects.get().status == "scheduled"


def test_an_unknown_username_is_the_same_answer_as_a_wrong_password(erased):
    response = _cancel({"username": "nobody-here", "password": PASSWORD})
    assert response.status_code == 403 and response.json()["error"] == "password_incorrect"


def test_credentials_are_required_and_bounded(user, erased):
    assert _cancel({}).json()["error"] == "credentials_required"
    assert _cancel({"username": user.username}).status_code == 400
    assert _cancel({"username": "x" * 151, "password": PASSWORD}).status_code == 400
    assert _cancel({"user": 2**70}).status_code == 400
    assert Erasure.objects.get().status == "scheduled"


def test_staff_cancel_a_users_erasure_and_others_may_not(user, other_user, staff_user, erased, client_for):
    assert _cancel({"user": user.pk}).status_code == 401
    assert _cancel({"user": user.pk}, client=client_for(other_user)).status_code == 403
    assert Erasure.objects.get().status == "scheduled"

    response = _cancel({"user": user.pk}, client=client_for(staff_user))

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    user.refresh_from_db()
    assert user.is_active
    assert AuditEvent.objects.get(action="privacy.erase.cancel").actor_id == staff_user.pk


def test_nothing_to_cancel_is_404(user, staff_user, client_for):
    assert _cancel({"username": user.username, "password": PASSWORD}).status_code == 404
    response = _cancel({"user": user.pk}, client=client_for(staff_user))
    assert response.status_code == 404 and response.json()["error"] == "no_pending_erasure"


@pytest.mark.parametrize("state", ["running", "retrying", "failed"])
def test_once_the_deletion_has_started_it_cannot_be_cancelled(state, user, staff_user, client_for):
    ErasureFactory(subject_id=user.pk, status=state)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)

    response = _cancel({"user": user.pk}, client=client_for(staff_user))

    assert response.status_code == 409
    assert (response.json()["error"], response.json()["status"]) == ("erasure_under_way", state)
    assert Erasure.objects.get().status == state
    assert not get_user_model().objects.get(pk=user.pk).is_active


def test_an_erasure_cancelled_while_the_sweep_retries_disconnects_stays_cancelled(
    user, other_user, client_for, http, django_capture_on_commit_callbacks
):
    """Google was down when both users asked to be erased, so the sweep retries their disconnects. While it
    is revoking the first user's grant, the second cancels and signs in again: the sweep must leave them be."""
    from privacy.tasks import sweep

    http.add(responses.POST, GOOGLE_REVOKE, status=503)
    for u in (other_user, user):  # the sweep takes the newest request first: `user`'s, then `other_user`'s
        ConnectionFactory(owner=u)
        with django_capture_on_commit_callbacks(execute=True):
            assert (
                client_for(u).post("/api/v1/privacy/erase/", {"password": PASSWORD}, format="json").status_code == 202
            )
    assert all(e.report["disconnect_pending"] == ["integrations"] for e in Erasure.objects.all())
    fresh = {}

    def revoke(request):
        if not fresh:  # the first user's revoke: meanwhile the second user cancels and signs in
            assert _cancel({"username": other_user.username, "password": PASSWORD}).status_code == 200
            login = {"username": other_user.username, "password": PASSWORD}
            fresh["token"] = APIClient().post("/api/v1/auth/token/", login, format="json").json()["token"]
        return (200, {}, "")

    http.remove(responses.POST, GOOGLE_REVOKE)
    http.add_callback(responses.POST, GOOGLE_REVOKE, callback=revoke)

    sweep()

    assert not Connection.objects.filter(owner=user).exists()  # the first user's erasure went on
    cancelled = Erasure.objects.get(subject_id=other_user.pk)
    assert cancelled.status == "cancelled" and "cancelled" in cancelled.report
    signed_in = APIClient()
    signed_in.credentials(HTTP_AUTHORIZATION=f"Token {fresh['token']}")
    assert signed_in.get("/api/v1/privacy/exports/").status_code == 200
    assert Connection.objects.filter(owner=other_user).exists()


@pytest.mark.parametrize("state", ["cancelled", "done", "running"])
def test_admin_run_now_on_an_erasure_that_cannot_run_says_so(state, user, staff_user):
    """Run now expedites a scheduled erasure or retries a failed one; on any other it must not report it queued."""
    from django.contrib.messages import get_messages
    from django.test import Client

    row = ErasureFactory(subject_id=user.pk, status=state)
    admin = Client()
    admin.force_login(staff_user)

    response = admin.post("/admin/privacy/erasure/", {"action": "run_now", "_selected_action": [row.pk]})

    assert response.status_code == 302
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert "0 erasure(s) queued." in shown, shown
    assert any(f"Erasure {row.pk}: " in m and state in m for m in shown), shown
    assert AuditEvent.objects.get(action="admin.run_now").outcome == "denied"
    row.refresh_from_db()
    assert row.status == state
