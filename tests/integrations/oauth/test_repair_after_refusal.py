"""A Google connection whose refresh token was refused is repaired with a new one."""

import pytest
import responses

from integrations import oauth
from integrations.errors import DomainError
from integrations.models import Connection

from .conftest import GOOGLE_TOKEN_URL, google_id_token, query
from .test_refresh import google_connection

pytestmark = pytest.mark.django_db

CALLBACK = "/api/v1/connections/google/callback/"


@responses.activate
def test_repairing_a_google_connection_whose_refresh_token_was_refused_gets_a_new_refresh_token(
    google, user, user_client
):
    """invalid_grant -> 409 with an authorization_url "that repairs it". Google issues a refresh token only with
    access_type=offline (and, for an account that already granted the app, prompt=consent); the hub asked
    offline only when it held no refresh token, and it still holds the dead one, so the repair asked for an
    online-only grant, kept the dead refresh token and the connection fell back to needs_reauth within the hour."""
    conn = google_connection(user, expires_in=10)
    responses.add(
        responses.POST,
        GOOGLE_TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    )
    with pytest.raises(DomainError) as info:
        oauth.access_token(connection=conn)
    params = query(info.value.extra["authorization_url"])
    assert params["access_type"] == "offline", params
    assert params["prompt"] == "consent", params

    # The same through the start endpoint a client uses to re-authorize the connection by id.
    response = user_client.post(
        "/api/v1/connections/google/start/", {"capabilities": ["mail"], "connection": conn.pk}, format="json"
    )
    params = query(response.json()["authorization_url"])
    assert params["access_type"] == "offline" and params["prompt"] == "consent", params

    # Google answers an offline consent with a new refresh token, which replaces the dead one.
    responses.replace(
        responses.POST,
        GOOGLE_TOKEN_URL,
        json={
            "access_token": "ya29.repaired",
            "expires_in": 3599,
            "refresh_token": "1//repaired",
            "scope": "openid https://www.googleapis.com/auth/gmail.modify",
            "token_type": "Bearer",
            "id_token": google_id_token(),
        },
    )
    assert user_client.get(CALLBACK, {"state": params["state"], "code": "c2"}).status_code == 200
    conn.refresh_from_db()
    assert conn.status == Connection.Status.ACTIVE and conn.refresh_token == "1//repaired"
