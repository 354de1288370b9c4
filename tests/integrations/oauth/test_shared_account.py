"""Two hub users connected the same Google account: Google keeps one grant per account and client, so revoking
one user's token ends the other's too."""

from urllib.parse import parse_qs

import pytest
import responses

from integrations.models import Connection

from .conftest import GOOGLE_REVOKE_URL, GOOGLE_TOKEN_URL, google_id_token, query

pytestmark = pytest.mark.django_db

CALLBACK = "/api/v1/connections/google/callback/"


def connect(client, refresh_token):
    """The whole round trip for ada@example.com (the same Google `sub` whichever hub user connects it)."""
    params = query(
        client.post("/api/v1/connections/google/start/", {"capabilities": ["mail"]}, format="json").json()[
            "authorization_url"
        ]
    )
    responses.replace(
        responses.POST,
        GOOGLE_TOKEN_URL,
        json={
            "access_token": f"ya29.{refresh_token}",
            "expires_in": 3599,
            "refresh_token": refresh_token,
            "scope": "openid https://www.googleapis.com/auth/gmail.modify",
            "token_type": "Bearer",
            "id_token": google_id_token(),
        },
    )
    response = client.get(CALLBACK, {"state": params["state"], "code": "4/code"})
    assert response.status_code == 200, response.content
    return Connection.objects.get(pk=response.json()["id"])


def revocations():
    return [parse_qs(c.request.body)["token"][0] for c in responses.calls if c.request.url == GOOGLE_REVOKE_URL]


@responses.activate
def test_disconnecting_one_of_two_connections_to_one_google_account_leaves_the_grant_to_the_other(
    google, user, user_client, other_user, client_for
):
    responses.add(responses.POST, GOOGLE_TOKEN_URL, json={})
    responses.add(responses.POST, GOOGLE_REVOKE_URL, status=200, body="")
    mine = connect(user_client, "1//mine")
    theirs = connect(client_for(other_user), "1//theirs")
    assert mine.account_id == theirs.account_id == "1098765"

    response = user_client.delete(f"/api/v1/connections/{mine.pk}/")
    assert response.status_code == 200, response.content
    assert response.json()["revoked"] is False
    assert "another connection in the hub uses the same Google account" in response.json()["detail"]
    assert not Connection.objects.filter(pk=mine.pk).exists()
    # Revoking 1//mine would have ended Google's grant for the account, 1//theirs with it.
    assert revocations() == []
    theirs.refresh_from_db()
    assert theirs.status == "active"

    # The last connection to the account revokes the grant as usual.
    response = client_for(other_user).delete(f"/api/v1/connections/{theirs.pk}/")
    assert response.status_code == 200 and response.json()["revoked"] is True
    assert revocations() == ["1//theirs"]


@responses.activate
def test_a_connection_to_the_account_that_needs_reauth_holds_no_live_grant_and_does_not_stop_the_revoke(
    google, user, user_client, other_user, client_for
):
    responses.add(responses.POST, GOOGLE_TOKEN_URL, json={})
    responses.add(responses.POST, GOOGLE_REVOKE_URL, status=200, body="")
    mine = connect(user_client, "1//mine")
    theirs = connect(client_for(other_user), "1//theirs")
    Connection.objects.filter(pk=theirs.pk).update(status="needs_reauth", status_detail="Token has been revoked.")
    response = user_client.delete(f"/api/v1/connections/{mine.pk}/")
    assert response.status_code == 200 and response.json()["revoked"] is True
    assert revocations() == ["1//mine"]
