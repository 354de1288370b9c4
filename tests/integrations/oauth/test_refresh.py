"""Refresh: before calls, by beat, once per connection across threads, rotation, refusal; connection_for's answers."""

import json
import threading
import time
from datetime import timedelta

import pytest
import responses
from django.db import connections
from django.utils import timezone

from integrations import oauth
from integrations.errors import DomainError, ProviderUnavailable
from integrations.models import Alert, Connection, ProviderCall
from tests.integrations.factories import ConnectionFactory

from .conftest import GMAIL, GOOGLE_TOKEN_URL


def ms_connection(user, *, expires_in, refresh_token="M.R_0"):
    return ConnectionFactory(
        owner=user,
        provider="microsoft_oauth",
        account="grace@contoso.com",
        capabilities=["mail"],
        scopes=["Mail.ReadWrite", "Mail.Send", "User.Read"],
        requested_scopes=["User.Read", "Mail.ReadWrite", "Mail.Send"],
        access_token="old-access",
        refresh_token=refresh_token,
        expires_at=timezone.now() + timedelta(seconds=expires_in),
    )


def google_connection(user, *, expires_in, scopes=None):
    return ConnectionFactory(
        owner=user,
        provider="google_oauth",
        account="ada@example.com",
        capabilities=["mail"],
        scopes=scopes or [f"{GMAIL}modify", f"{GMAIL}send", f"{GMAIL}compose", f"{GMAIL}labels"],
        access_token="ya29.old",
        refresh_token="1//google-refresh",
        expires_at=timezone.now() + timedelta(seconds=expires_in),
    )


class RotatingTokenEndpoint:
    """Plays Microsoft: every refresh token works once and is replaced; a spent one is invalid_grant."""

    def __init__(self, first):
        self.live = first
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, form):
        time.sleep(0.15)  # long enough that the other threads pile up on the lock
        with self.lock:
            if form.get("refresh_token") != self.live:
                return 400, {"error": "invalid_grant", "error_description": "AADSTS70000: token already redeemed"}
            self.n += 1
            self.live = f"M.R_{self.n}"
            return 200, {
                "token_type": "Bearer",
                "scope": "Mail.ReadWrite Mail.Send User.Read",
                "expires_in": 3600,
                "access_token": f"access-{self.n}",
                "refresh_token": self.live,
            }


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_eight_threads_refreshing_at_once_spend_the_refresh_token_once(idp, user):
    conn = ms_connection(user, expires_in=30)
    endpoint = RotatingTokenEndpoint("M.R_0")
    idp.token_responses = [endpoint]
    results, errors = [], []
    barrier = threading.Barrier(8)

    def worker():
        try:
            row = Connection.objects.get(pk=conn.pk)  # each thread read the row before anyone refreshed
            barrier.wait()
            results.append(oauth.access_token(connection=row))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    refreshes = [f for f in idp.token_requests() if f.get("grant_type") == "refresh_token"]
    assert len(refreshes) == 1 and refreshes[0]["refresh_token"] == "M.R_0"
    assert results == ["access-1"] * 8
    conn.refresh_from_db()
    assert conn.status == "active" and conn.refresh_token == "M.R_1"
    assert ProviderCall.objects.filter(provider="microsoft_oauth", operation="token.refresh").count() == 1


@pytest.mark.django_db
class TestRefreshBeforeCalls:
    @responses.activate
    def test_a_token_with_less_than_five_minutes_left_is_refreshed_before_use(self, google, user):
        conn = google_connection(user, expires_in=240)
        responses.add(
            responses.POST,
            GOOGLE_TOKEN_URL,
            json={"access_token": "ya29.new", "expires_in": 3599, "scope": f"{GMAIL}modify", "token_type": "Bearer"},
        )
        assert oauth.access_token(connection=conn) == "ya29.new"
        body = responses.calls[0].request.body
        assert "grant_type=refresh_token" in body and "refresh_token=1%2F%2Fgoogle-refresh" in body
        conn.refresh_from_db()
        # Google did not send a new refresh token: the one held stays; last use is stamped.
        assert conn.refresh_token == "1//google-refresh" and conn.last_used_at is not None

    @responses.activate
    def test_a_token_with_time_left_is_used_as_it_is(self, google, user):
        conn = google_connection(user, expires_in=1200)
        assert oauth.access_token(connection=conn) == "ya29.old"
        assert len(responses.calls) == 0

    @responses.activate
    def test_a_google_server_error_is_retryable_and_leaves_the_connection_active(self, google, user):
        conn = google_connection(user, expires_in=10)
        responses.add(responses.POST, GOOGLE_TOKEN_URL, status=503, body="backend error", headers={"Retry-After": "7"})
        with pytest.raises(ProviderUnavailable) as info:
            oauth.access_token(connection=conn)
        assert info.value.retryable and info.value.retry_after == 7
        conn.refresh_from_db()
        assert conn.status == "active" and conn.access_token == "ya29.old"

    @responses.activate
    def test_google_invalid_grant_needs_reauth(self, google, user):
        conn = google_connection(user, expires_in=10)
        responses.add(
            responses.POST,
            GOOGLE_TOKEN_URL,
            status=400,
            json={"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
        )
        with pytest.raises(DomainError) as info:
            oauth.access_token(connection=conn)
        assert info.value.status == 409 and info.value.code == "connection_needs_reauth"
        assert "accounts.google.com" in info.value.extra["authorization_url"]
        conn.refresh_from_db()
        assert conn.status == "needs_reauth" and "revoked" in conn.status_detail


@pytest.mark.django_db
class TestBeat:
    def test_the_sweep_refreshes_tokens_expiring_within_fifteen_minutes_only(
        self, idp, user, eager, django_capture_on_commit_callbacks
    ):
        from integrations.oauth.tasks import oauth_refresh_due

        soon = ms_connection(user, expires_in=600)
        later = ConnectionFactory(
            owner=user, provider="microsoft_oauth", expires_at=timezone.now() + timedelta(hours=1)
        )
        idp.token_responses = [RotatingTokenEndpoint("M.R_0")]
        with django_capture_on_commit_callbacks(execute=True):
            assert oauth_refresh_due() == 1
        soon.refresh_from_db()
        later.refresh_from_db()
        assert soon.access_token == "access-1" and soon.refresh_token == "M.R_1"
        assert later.access_token.startswith("ya29.")

    def test_a_refused_grant_in_the_sweep_is_recorded_not_retried(self, idp, user):
        from integrations.oauth.tasks import oauth_connection_refresh

        conn = ms_connection(user, expires_in=600, refresh_token="M.R_dead")
        idp.token_responses = [RotatingTokenEndpoint("M.R_0")]
        oauth_connection_refresh.apply(args=[conn.pk]).get()
        conn.refresh_from_db()
        assert conn.status == "needs_reauth"
        assert not Alert.objects.filter(kind="task_failed").exists()
        assert Alert.objects.filter(kind="connection_reauth").count() == 1

    def test_a_refused_grant_is_kept_in_admin_without_paging_the_channels(
        self, idp, user, settings, django_capture_on_commit_callbacks
    ):
        # The user is told (409 with the way back); one user's revoked grant is not a page for staff.
        from django.core import mail

        from integrations.models import AlertDelivery
        from integrations.oauth.tasks import oauth_connection_refresh

        settings.ALERT_EMAIL_TO = ["ops@example.com"]
        conn = ms_connection(user, expires_in=600, refresh_token="M.R_dead")
        idp.token_responses = [RotatingTokenEndpoint("M.R_0")]
        with django_capture_on_commit_callbacks(execute=True):
            oauth_connection_refresh.apply(args=[conn.pk]).get()
        alert = Alert.objects.get(kind="connection_reauth")
        assert alert.severity == "info"
        assert not AlertDelivery.objects.exists() and not mail.outbox


@pytest.mark.django_db
class TestConnectionFor:
    def test_another_users_connection_is_404(self, google, user, other_user):
        conn = google_connection(other_user, expires_in=3600)
        with pytest.raises(DomainError) as info:
            oauth.connection_for(owner=user, connection_id=conn.pk, capability="mail")
        assert info.value.status == 404

    def test_a_scope_not_granted_is_403_naming_it(self, google, user):
        conn = google_connection(user, expires_in=3600, scopes=[f"{GMAIL}modify"])
        assert oauth.connection_for(owner=user, connection_id=conn.pk, capability="mail", need=[f"{GMAIL}modify"])
        with pytest.raises(DomainError) as info:
            oauth.connection_for(owner=user, connection_id=conn.pk, capability="mail", need=[f"{GMAIL}send"])
        assert info.value.status == 403 and info.value.extra["missing_scopes"] == [f"{GMAIL}send"]
        assert f"{GMAIL}send" in info.value.detail

    def test_a_capability_never_asked_for_is_403(self, google, user):
        conn = google_connection(user, expires_in=3600)
        with pytest.raises(DomainError) as info:
            oauth.connection_for(owner=user, connection_id=conn.pk, capability="calendar")
        assert info.value.status == 403 and info.value.code == "missing_scope"

    def test_bearer_auth_sends_the_fresh_token(self, google, user):
        import httpx

        conn = google_connection(user, expires_in=3600)
        seen = []
        transport = httpx.MockTransport(
            lambda request: seen.append(request.headers["Authorization"]) or httpx.Response(200)
        )
        with httpx.Client(transport=transport, auth=oauth.bearer_auth(connection=conn)) as client:
            client.get("https://graph.microsoft.com/v1.0/me")
        assert seen == ["Bearer ya29.old"]

    def test_google_credentials_carry_the_token_but_cannot_refresh_by_themselves(self, google, user):
        conn = google_connection(user, expires_in=3600)
        creds = oauth.google_credentials(connection=conn)
        assert creds.token == "ya29.old" and creds.refresh_token is None


@pytest.mark.django_db
def test_admin_shows_connections_without_token_values(google, user, staff_client):
    conn = google_connection(user, expires_in=3600)
    staff_client.force_login(user.__class__.objects.get(is_staff=True))
    for url in ("/admin/integrations/connection/", f"/admin/integrations/connection/{conn.pk}/change/"):
        page = staff_client.get(url)
        assert page.status_code == 200
        assert b"ya29.old" not in page.content and b"google-refresh" not in page.content
        assert b"ada@example.com" in page.content


@pytest.mark.django_db
class TestDisconnectDuringRefresh:
    """The owner disconnects (DELETE) while Google answers a refresh: the row is gone when the answer is stored."""

    def google_answers_after_a_disconnect(self, conn, user_client):
        def token_endpoint(request):
            assert user_client.delete(f"/api/v1/connections/{conn.pk}/").status_code == 200
            return 200, {}, json.dumps({"access_token": "ya29.new", "expires_in": 3599, "token_type": "Bearer"})

        responses.add_callback(responses.POST, GOOGLE_TOKEN_URL, callback=token_endpoint)
        responses.add(responses.POST, "https://oauth2.googleapis.com/revoke", status=200, body="")

    @responses.activate
    def test_a_call_gets_404_connection_not_found(self, google, user, user_client):
        conn = google_connection(user, expires_in=10)
        self.google_answers_after_a_disconnect(conn, user_client)
        with pytest.raises(DomainError) as info:
            oauth.access_token(connection=conn)
        assert info.value.status == 404 and info.value.code == "connection_not_found"
        assert not Connection.objects.filter(pk=conn.pk).exists()

    @responses.activate
    def test_the_beat_refresh_ends_quietly(self, google, user, user_client):
        from integrations.oauth.tasks import oauth_connection_refresh

        conn = google_connection(user, expires_in=600)
        self.google_answers_after_a_disconnect(conn, user_client)
        oauth_connection_refresh.apply(args=[conn.pk]).get()
        assert not Connection.objects.filter(pk=conn.pk).exists()
        assert not Alert.objects.filter(kind="task_failed").exists()
