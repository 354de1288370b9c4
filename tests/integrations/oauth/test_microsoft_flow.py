"""Microsoft: the round trip through msal against a local HTTPS identity provider (msal refuses http://)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import oauth
from integrations.models import Alert, Connection, ProviderCall

from .conftest import APP_URL, query, s256
from .fake_idp import id_token

pytestmark = pytest.mark.django_db

CALLBACK = "/api/v1/connections/microsoft/callback/"
CLAIMS = {"oid": "00000000-aaaa", "tid": "tenant-1", "sub": "sub-1", "preferred_username": "grace@contoso.com"}


def tokens(
    nonce, *, refresh_token="M.R3_first", scope="Mail.ReadWrite Mail.Send User.Read openid profile offline_access"
):
    return {
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": 3600,
        "access_token": "eyJ-graph-access-1",
        "refresh_token": refresh_token,
        "id_token": id_token({**CLAIMS, "nonce": nonce}),
    }


def start(client, capabilities=("mail",)):
    response = client.post("/api/v1/connections/microsoft/start/", {"capabilities": list(capabilities)}, format="json")
    assert response.status_code == 200, response.content
    return query(response.json()["authorization_url"])


def connect(idp, client, **token_kwargs):
    params = start(client)
    idp.token_responses = [(200, tokens(params["nonce"], **token_kwargs))]
    response = client.get(CALLBACK, {"code": "0.AAA-code", "state": params["state"], "session_state": "s"})
    assert response.status_code == 200, response.content
    return params, response.json()


class TestMicrosoftRoundTrip:
    def test_start_points_at_the_authority_with_pkce_and_graph_scopes(self, idp, user_client):
        params = start(user_client)
        assert params["redirect_uri"] == f"{APP_URL}{CALLBACK}"
        assert params["code_challenge_method"] == "S256" and params["code_challenge"]
        assert {"Mail.ReadWrite", "Mail.Send", "offline_access"} <= set(params["scope"].split())
        # The discovery document was fetched once, over TLS, as a logged call.
        assert ProviderCall.objects.filter(provider="microsoft_oauth", operation="discovery", outcome="ok").count() == 1

    def test_callback_exchanges_the_code_with_the_verifier_and_stores_the_connection(self, idp, user, user_client):
        params, body = connect(idp, user_client, scope="Mail.ReadWrite User.Read openid profile offline_access")
        sent = idp.token_requests()[-1]
        assert sent["grant_type"] == "authorization_code" and sent["code"] == "0.AAA-code"
        assert s256(sent["code_verifier"]) == params["code_challenge"]
        assert sent["redirect_uri"] == f"{APP_URL}{CALLBACK}"
        assert body["account"] == "grace@contoso.com" and body["provider"] == "microsoft"
        assert body["missing_scopes"] == ["Mail.Send"]  # granted fewer than asked, and shown
        conn = Connection.objects.get(owner=user)
        assert conn.refresh_token == "M.R3_first" and conn.account_id == "00000000-aaaa.tenant-1"
        assert ProviderCall.objects.filter(
            provider="microsoft_oauth", operation="token.exchange", outcome="ok"
        ).exists()

    def test_a_renamed_account_authorized_again_updates_its_connection_instead_of_adding_a_second(
        self, idp, user, user_client
    ):
        connect(idp, user_client)
        first = Connection.objects.get(owner=user)
        # The tenant renamed the mailbox: same oid and tid, a new preferred_username.
        params = start(user_client, capabilities=("calendar",))
        # Graph's token covers every scope the account consented to, the mail ones from the first time too.
        granted = "Mail.ReadWrite Mail.Send Calendars.ReadWrite User.Read openid profile offline_access"
        answer = tokens(params["nonce"], refresh_token="M.R3_after_rename", scope=granted)
        answer["id_token"] = id_token(
            {**CLAIMS, "preferred_username": "grace.hopper@contoso.com", "nonce": params["nonce"]}
        )
        idp.token_responses = [(200, answer)]
        response = user_client.get(CALLBACK, {"code": "0.BBB-code", "state": params["state"]})
        assert response.status_code == 200, response.content
        assert response.json()["id"] == first.pk
        conn = Connection.objects.get(owner=user)  # one connection for the one account
        assert conn.account == "grace.hopper@contoso.com" and conn.account_id == "00000000-aaaa.tenant-1"
        assert conn.refresh_token == "M.R3_after_rename" and conn.capabilities == ["mail", "calendar"]

    def test_a_wrong_state_never_reaches_the_token_endpoint(self, idp, user_client):
        params = start(user_client)
        response = user_client.get(CALLBACK, {"code": "x", "state": params["state"] + "x"})
        assert response.status_code == 400 and response.json()["error"] == "invalid_state"
        assert idp.token_requests() == []
        assert Connection.objects.count() == 0

    def test_delete_is_local_only_and_says_so(self, idp, user, user_client):
        connect(idp, user_client)
        conn = Connection.objects.get(owner=user)
        posts_before = len(idp.requests)
        response = user_client.delete(f"/api/v1/connections/{conn.pk}/")
        assert response.status_code == 200
        assert response.json()["revoked"] is False and "no endpoint to revoke" in response.json()["detail"]
        assert len(idp.requests) == posts_before
        assert not Connection.objects.filter(pk=conn.pk).exists()


class TestMicrosoftRefresh:
    def test_a_rotated_refresh_token_is_stored_at_once(self, idp, user, user_client):
        from integrations.oauth import services

        connect(idp, user_client)
        conn = Connection.objects.get(owner=user)
        answer = {**tokens("n"), "access_token": "eyJ-access-2", "refresh_token": "M.R3_second"}
        answer.pop("id_token")
        idp.token_responses = [(200, answer)]
        services.connection_refresh(connection_id=conn.pk, force=True)
        sent = idp.token_requests()[-1]
        assert sent["grant_type"] == "refresh_token" and sent["refresh_token"] == "M.R3_first"
        conn.refresh_from_db()
        assert conn.refresh_token == "M.R3_second" and conn.access_token == "eyJ-access-2"

    def test_invalid_grant_marks_needs_reauth_raises_one_alert_and_answers_409_with_a_url(self, idp, user, user_client):
        connect(idp, user_client)
        conn = Connection.objects.get(owner=user)
        Connection.objects.filter(pk=conn.pk).update(expires_at=timezone.now() + timedelta(minutes=2))
        idp.token_responses = [
            (400, {"error": "invalid_grant", "error_description": "AADSTS70008: The refresh token has expired."})
        ]
        for _ in range(2):
            conn = Connection.objects.get(pk=conn.pk)
            with pytest.raises(Exception) as info:
                oauth.access_token(
                    connection=oauth.connection_for(owner=user, connection_id=conn.pk, capability="mail")
                )
            assert info.value.status == 409 and info.value.code == "connection_needs_reauth"
            assert query(info.value.extra["authorization_url"])["login_hint"] == "grace@contoso.com"
        conn.refresh_from_db()
        assert conn.status == "needs_reauth"
        assert len(idp.token_requests()) == 2  # the exchange, then one refused refresh; the second call asks no one
        alert = Alert.objects.get(kind="connection_reauth")
        assert alert.occurrences == 1

    @pytest.mark.parametrize(
        "error, description",
        [
            ("interaction_required", "AADSTS50076: you must use multi-factor authentication to access this resource."),
            ("consent_required", "AADSTS65001: The user or administrator has not consented to use the application."),
        ],
    )
    def test_a_refresh_that_needs_the_user_marks_needs_reauth_like_invalid_grant(
        self, idp, user, user_client, error, description
    ):
        from integrations.oauth.tasks import oauth_connection_refresh

        connect(idp, user_client)
        conn = Connection.objects.get(owner=user)
        Connection.objects.filter(pk=conn.pk).update(expires_at=timezone.now() + timedelta(minutes=10))
        idp.token_responses = [(400, {"error": error, "error_description": description, "suberror": "basic_action"})]
        oauth_connection_refresh.apply(args=[conn.pk]).get()  # the beat's refresh ahead of expiry
        conn.refresh_from_db()
        assert conn.status == "needs_reauth" and conn.status_detail.startswith("AADSTS")
        assert Alert.objects.filter(kind="connection_reauth").count() == 1
        assert not Alert.objects.filter(kind="task_failed").exists()
        with pytest.raises(Exception) as info:
            oauth.connection_for(owner=user, connection_id=conn.pk, capability="mail")
        assert info.value.status == 409 and info.value.code == "connection_needs_reauth"
        assert info.value.extra["authorization_url"]
