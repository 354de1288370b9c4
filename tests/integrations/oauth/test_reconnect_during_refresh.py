"""The owner authorizes a connection again while a refresh of its old grant is at Google's token endpoint.

The refresh read the row (and its refresh token) before the reconnect stored the new grant; what Google
then answers about the old grant must not be stored over the new one.
"""

import json
from urllib.parse import parse_qs

import pytest
import responses

from integrations import oauth
from integrations.models import Alert, Connection

from .conftest import GMAIL, GOOGLE_TOKEN_URL, google_id_token, query
from .test_refresh import google_connection

pytestmark = pytest.mark.django_db

CALLBACK = "/api/v1/connections/google/callback/"
CALENDAR = "https://www.googleapis.com/auth/calendar."
OLD_SCOPES = f"{GMAIL}modify {GMAIL}send {GMAIL}compose {GMAIL}labels"


def reconnect_while_google_refreshes(user_client, *, refresh_answer, incremental=None):
    """Google's token endpoint: a refresh (of the old grant) waits while the owner authorizes mail and calendar
    again, then the refresh gets `refresh_answer`. A new authorization is an offline consent (Google sends a new
    refresh token); an incremental one (`incremental`: the connection) adds calendar and keeps the refresh token."""
    body = {"capabilities": ["mail", "calendar"]}
    if incremental is not None:
        body = {"capabilities": ["calendar"], "connection": incremental.pk}
    params = query(
        user_client.post("/api/v1/connections/google/start/", body, format="json").json()["authorization_url"]
    )
    assert params["access_type"] == ("online" if incremental else "offline")

    def token_endpoint(request):
        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        if form["grant_type"] == "authorization_code":
            answer = {
                "access_token": "ya29.reconnected",
                "expires_in": 3599,
                "refresh_token": "1//reconnected",
                "scope": f"openid {OLD_SCOPES} {CALENDAR}events {CALENDAR}readonly",
                "token_type": "Bearer",
                "id_token": google_id_token(),
            }
            if incremental:
                del answer["refresh_token"]
            return 200, {}, json.dumps(answer)
        assert form["refresh_token"] == "1//google-refresh"
        response = user_client.get(CALLBACK, {"state": params["state"], "code": "4/again"})
        assert response.status_code == 200, response.content
        status, body = refresh_answer
        return status, {}, json.dumps(body)

    responses.add_callback(responses.POST, GOOGLE_TOKEN_URL, callback=token_endpoint)


def assert_the_new_grant_stands(conn, user, refresh_token="1//reconnected"):
    conn.refresh_from_db()
    assert conn.status == "active" and conn.status_detail == ""
    assert conn.access_token == "ya29.reconnected" and conn.refresh_token == refresh_token
    assert f"{CALENDAR}events" in conn.scopes
    assert oauth.connection_for(owner=user, connection_id=conn.pk, capability="calendar") == conn
    assert not Alert.objects.filter(kind="connection_reauth", resolved_at__isnull=True).exists()


@responses.activate
def test_a_beat_refresh_of_the_old_grant_does_not_overwrite_the_reconnected_tokens(google, user, user_client):
    from integrations.oauth.tasks import oauth_connection_refresh

    conn = google_connection(user, expires_in=600)
    Connection.objects.filter(pk=conn.pk).update(account_id="1098765")
    reconnect_while_google_refreshes(
        user_client,
        refresh_answer=(200, {"access_token": "ya29.old-grant", "expires_in": 3599, "scope": OLD_SCOPES}),
    )
    oauth_connection_refresh.apply(args=[conn.pk]).get()
    assert Connection.objects.filter(owner=user).count() == 1
    # Stored, the old grant's answer took the calendar scopes away again: calendar calls were 403 missing_scope.
    assert_the_new_grant_stands(conn, user)


@responses.activate
def test_an_incremental_authorization_keeping_the_refresh_token_is_not_overwritten_either(google, user, user_client):
    """Google's incremental authorization sends no new refresh token: the one held stays, with more scopes."""
    from integrations.oauth.tasks import oauth_connection_refresh

    conn = google_connection(user, expires_in=600)
    Connection.objects.filter(pk=conn.pk).update(account_id="1098765", last_refreshed_at=conn.created_at)
    reconnect_while_google_refreshes(
        user_client,
        incremental=conn,
        refresh_answer=(200, {"access_token": "ya29.old-grant", "expires_in": 3599, "scope": OLD_SCOPES}),
    )
    oauth_connection_refresh.apply(args=[conn.pk]).get()
    assert_the_new_grant_stands(conn, user, refresh_token="1//google-refresh")


@responses.activate
def test_a_refused_old_grant_does_not_send_the_reconnected_connection_to_needs_reauth(google, user, user_client):
    """The owner revoked the hub at Google and connected again; the refresh of the revoked grant is refused."""
    conn = google_connection(user, expires_in=10)
    Connection.objects.filter(pk=conn.pk).update(account_id="1098765")
    reconnect_while_google_refreshes(
        user_client,
        refresh_answer=(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
    )
    # The call that needed a token gets the new grant's, not a 409 asking to authorize what was just authorized.
    assert oauth.access_token(connection=conn) == "ya29.reconnected"
    assert_the_new_grant_stands(conn, user)
