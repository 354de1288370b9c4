"""Google: the whole authorization round trip through google-auth-oauthlib, HTTP intercepted with responses."""

import json
from urllib.parse import parse_qs

import pytest
import responses
import time_machine
from django.db import connection as db
from django.utils import timezone

from integrations.models import Connection, OAuthState, ProviderCall
from integrations.states import IllegalTransition, transition

from .conftest import APP_URL, GMAIL, GOOGLE_TOKEN_URL, google_id_token, query, s256

pytestmark = pytest.mark.django_db

CALLBACK = "/api/v1/connections/google/callback/"


def start(client, **body):
    response = client.post("/api/v1/connections/google/start/", {"capabilities": ["mail"], **body}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["authorization_url"]


def token_answer(rsps, *, scope=None, refresh_token="1//refresh-first", email="ada@example.com", status=200, body=None):
    granted = (
        scope
        or f"openid https://www.googleapis.com/auth/userinfo.email {GMAIL}modify {GMAIL}send {GMAIL}compose {GMAIL}labels"
    )
    payload = body or {
        "access_token": "ya29.access-first",
        "expires_in": 3599,
        "refresh_token": refresh_token,
        "scope": granted,
        "token_type": "Bearer",
        "id_token": google_id_token(email=email),
    }
    if refresh_token is None:
        payload.pop("refresh_token", None)
    rsps.add(responses.POST, GOOGLE_TOKEN_URL, json=payload, status=status)


class TestStart:
    def test_the_url_asks_google_for_mail_scopes_offline_access_and_pkce(self, google, user_client):
        params = query(start(user_client))
        assert params["redirect_uri"] == f"{APP_URL}{CALLBACK}"
        assert params["code_challenge_method"] == "S256"
        assert params["access_type"] == "offline" and params["prompt"] == "consent"
        assert params["include_granted_scopes"] == "true"
        scopes = params["scope"].split()
        assert {f"{GMAIL}modify", f"{GMAIL}send", f"{GMAIL}compose", f"{GMAIL}labels"} <= set(scopes)
        assert not any("calendar" in s for s in scopes)
        state = OAuthState.objects.get(state=params["state"])
        assert s256(state.code_verifier) == params["code_challenge"]
        assert (state.expires_at - timezone.now()).total_seconds() == pytest.approx(600, abs=5)

    def test_the_redirect_uri_comes_from_app_url_not_the_host_header(self, google, user_client):
        response = user_client.post(
            "/api/v1/connections/google/start/", {"capabilities": ["mail"]}, format="json", HTTP_HOST="evil.example"
        )
        # Either the host is refused outright, or it is ignored; it never reaches the redirect URI.
        if response.status_code == 200:
            assert query(response.json()["authorization_url"])["redirect_uri"].startswith(APP_URL)
        assert OAuthState.objects.count() <= 1

    def test_unknown_capability_is_a_400_and_nothing_is_stored(self, google, user_client):
        response = user_client.post("/api/v1/connections/google/start/", {"capabilities": ["fax"]}, format="json")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_capabilities"
        assert OAuthState.objects.count() == 0

    def test_an_unknown_provider_is_a_404(self, google, user_client):
        response = user_client.post("/api/v1/connections/myspace/start/", {"capabilities": ["mail"]}, format="json")
        assert response.status_code == 404
        assert response.json()["error"] == "unknown_oauth_provider"

    def test_not_configured_is_a_503_naming_the_settings(self, settings, user_client):
        settings.GOOGLE_CLIENT_ID = ""
        response = user_client.post("/api/v1/connections/google/start/", {"capabilities": ["mail"]}, format="json")
        assert response.status_code == 503
        assert response.json()["error"] == "provider_not_configured"
        assert "GOOGLE_CLIENT_ID" in response.json()["missing"]


class TestCallback:
    @responses.activate
    def test_round_trip_stores_one_encrypted_connection_with_the_granted_scopes(self, google, user, user_client):
        params = query(start(user_client))
        # The user unticked "send": Google grants fewer scopes than asked.
        token_answer(
            responses,
            scope=f"openid https://www.googleapis.com/auth/userinfo.email {GMAIL}modify {GMAIL}compose {GMAIL}labels",
        )
        response = user_client.get(CALLBACK, {"state": params["state"], "code": "4/auth-code"})
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["provider"] == "google" and body["account"] == "ada@example.com"
        assert body["missing_scopes"] == [f"{GMAIL}send"]
        assert "access_token" not in body and "refresh_token" not in body

        sent = {k: v[0] for k, v in parse_qs(responses.calls[0].request.body).items()}
        assert sent["grant_type"] == "authorization_code" and sent["code"] == "4/auth-code"
        assert s256(sent["code_verifier"]) == params["code_challenge"]  # the PKCE verifier went to Google
        assert sent["redirect_uri"] == f"{APP_URL}{CALLBACK}"

        conn = Connection.objects.get(owner=user)
        assert conn.access_token == "ya29.access-first" and conn.refresh_token == "1//refresh-first"
        assert conn.account_id == "1098765" and conn.capabilities == ["mail"]
        assert (conn.expires_at - timezone.now()).total_seconds() == pytest.approx(3599, abs=10)
        with db.cursor() as cursor:
            cursor.execute("SELECT access_token, refresh_token FROM integrations_connection WHERE id = %s", [conn.pk])
            assert "ya29" not in "".join(cursor.fetchone())
        call = ProviderCall.objects.get(provider="google_oauth")
        assert call.operation == "token.exchange" and call.outcome == "ok" and call.http_status == 200

    @responses.activate
    def test_a_capability_none_of_whose_scopes_was_granted_is_not_the_connections(self, google, user, user_client):
        """Google lets the user untick every calendar scope: the connection then has mail, not calendar."""
        params = query(start(user_client, capabilities=["mail", "calendar"]))
        token_answer(
            responses,
            scope=f"openid https://www.googleapis.com/auth/userinfo.email {GMAIL}modify {GMAIL}send {GMAIL}compose",
        )
        response = user_client.get(CALLBACK, {"state": params["state"], "code": "c"})
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["capabilities"] == ["mail"]
        calendar = "https://www.googleapis.com/auth/calendar."
        assert body["missing_scopes"] == [f"{GMAIL}labels", f"{calendar}events", f"{calendar}readonly"]
        # The user's calendars are those of connections that can read them: none, not a 403 for this one.
        listed = user_client.get("/api/v1/calendars/")
        assert listed.status_code == 200, listed.content
        assert (listed.json()["results"] if isinstance(listed.json(), dict) else listed.json()) == []

    @responses.activate
    def test_a_second_authorization_of_the_same_account_updates_it(self, google, user, user_client):
        token_answer(responses)
        user_client.get(CALLBACK, {"state": query(start(user_client))["state"], "code": "c1"})
        conn = Connection.objects.get(owner=user)
        # Incremental: add calendar; Google sends no new refresh token, the one held is kept.
        url = start(user_client, capabilities=["calendar"], connection=conn.pk)
        params = query(url)
        assert params["access_type"] == "online" and "prompt" not in params
        assert params["login_hint"] == "ada@example.com"
        responses.replace(
            responses.POST,
            GOOGLE_TOKEN_URL,
            json={
                "access_token": "ya29.second",
                "expires_in": 3599,
                "scope": f"openid {GMAIL}modify https://www.googleapis.com/auth/calendar.events",
                "token_type": "Bearer",
                "id_token": google_id_token(),
            },
        )
        assert user_client.get(CALLBACK, {"state": params["state"], "code": "c2"}).status_code == 200
        assert Connection.objects.filter(owner=user).count() == 1
        conn.refresh_from_db()
        assert conn.access_token == "ya29.second" and conn.refresh_token == "1//refresh-first"
        assert conn.capabilities == ["mail", "calendar"]

    @responses.activate
    def test_an_account_whose_email_changed_is_the_same_connection(self, google, user, user_client):
        """Google names the account by `sub`; its email is only the current primary address."""
        token_answer(responses)
        user_client.get(CALLBACK, {"state": query(start(user_client))["state"], "code": "c1"})
        conn = Connection.objects.get(owner=user)
        params = query(start(user_client, capabilities=["calendar"], connection=conn.pk))
        responses.replace(
            responses.POST,
            GOOGLE_TOKEN_URL,
            json={
                "access_token": "ya29.renamed",
                "expires_in": 3599,
                "scope": f"openid {GMAIL}modify https://www.googleapis.com/auth/calendar.events",
                "token_type": "Bearer",
                "id_token": google_id_token(email="ada.lovelace@example.com"),  # same sub
            },
        )
        response = user_client.get(CALLBACK, {"state": params["state"], "code": "c2"})
        assert response.status_code == 200, response.content
        assert response.json()["id"] == conn.pk
        assert Connection.objects.filter(owner=user).count() == 1
        conn.refresh_from_db()
        assert conn.account == "ada.lovelace@example.com" and conn.account_id == "1098765"
        assert conn.access_token == "ya29.renamed" and conn.refresh_token == "1//refresh-first"
        assert conn.capabilities == ["mail", "calendar"]

    @responses.activate
    def test_authorizing_again_moves_a_connection_back_to_active_through_its_state_machine(
        self, google, user, user_client, monkeypatch
    ):
        token_answer(responses)
        user_client.get(CALLBACK, {"state": query(start(user_client))["state"], "code": "c1"})
        conn = Connection.objects.get(owner=user)
        assert conn.status == "active"
        transition(Connection, conn.pk, Connection.Status.NEEDS_REAUTH, status_detail="refresh token revoked")
        # The move back is the table's needs_reauth -> active: without it, authorizing again changes nothing.
        monkeypatch.setitem(Connection.TRANSITIONS, Connection.Status.NEEDS_REAUTH, {Connection.Status.REVOKED})
        with pytest.raises(IllegalTransition):
            user_client.get(CALLBACK, {"state": query(start(user_client, connection=conn.pk))["state"], "code": "c2"})
        conn.refresh_from_db()
        assert (conn.status, conn.status_detail) == ("needs_reauth", "refresh token revoked")
        monkeypatch.undo()
        response = user_client.get(
            CALLBACK, {"state": query(start(user_client, connection=conn.pk))["state"], "code": "c3"}
        )
        assert response.status_code == 200 and response.json()["status"] == "active"
        conn.refresh_from_db()
        assert (conn.status, conn.status_detail) == ("active", "")

    @pytest.mark.parametrize("case", ["missing", "wrong", "expired", "reused", "other_user", "provider_error"])
    @responses.activate
    def test_a_bad_state_is_a_400_and_stores_nothing(self, case, google, user_client, other_user, client_for):
        token_answer(responses)
        state = query(start(user_client))["state"]
        client, params = user_client, {"state": state, "code": "4/code"}
        if case == "missing":
            params.pop("state")
        elif case == "wrong":
            params["state"] = "forged-" + state
        elif case == "expired":
            client.get  # noqa: B018 - travel 11 minutes ahead below
        elif case == "reused":
            assert client.get(CALLBACK, params).status_code == 200
            Connection.objects.all().delete()
            responses.calls.reset()
        elif case == "other_user":
            client = client_for(other_user)
        elif case == "provider_error":
            params = {"state": state, "error": "access_denied", "error_description": "The user said no"}
        if case == "expired":
            with time_machine.travel(timezone.now() + timezone.timedelta(minutes=11)):
                response = client.get(CALLBACK, params)
        else:
            response = client.get(CALLBACK, params)
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["error"] in {"invalid_state", "authorization_denied"} and body["detail"]
        assert Connection.objects.count() == 0
        assert len(responses.calls) == 0  # no code was exchanged

    def test_an_anonymous_callback_is_refused(self, google, user_client, api_client):
        state = query(start(user_client))["state"]
        response = api_client.get(CALLBACK, {"state": state, "code": "x"})
        assert response.status_code in (401, 403)
        assert Connection.objects.count() == 0

    @responses.activate
    def test_a_refused_code_is_a_clear_error_and_nothing_is_stored(self, google, user_client):
        token_answer(responses, status=400, body={"error": "invalid_grant", "error_description": "Bad Request"})
        response = user_client.get(CALLBACK, {"state": query(start(user_client))["state"], "code": "stale"})
        assert response.status_code == 400 and response.json()["error"] == "authorization_failed"
        assert Connection.objects.count() == 0
        assert ProviderCall.objects.get(provider="google_oauth").outcome == "error"


class TestListAndDelete:
    @responses.activate
    def test_list_shows_own_connections_without_tokens_and_delete_revokes_at_google(
        self, google, user, user_client, other_user, client_for
    ):
        token_answer(responses)
        user_client.get(CALLBACK, {"state": query(start(user_client))["state"], "code": "c"})
        listed = user_client.get("/api/v1/connections/").json()
        rows = listed["results"] if isinstance(listed, dict) else listed
        assert [r["account"] for r in rows] == ["ada@example.com"]
        assert "token" not in json.dumps(rows).replace("refreshed", "")
        others = client_for(other_user).get("/api/v1/connections/").json()
        assert (others["results"] if isinstance(others, dict) else others) == []
        conn = Connection.objects.get(owner=user)
        assert client_for(other_user).delete(f"/api/v1/connections/{conn.pk}/").status_code == 404

        responses.add(responses.POST, "https://oauth2.googleapis.com/revoke", status=200, body="")
        response = user_client.delete(f"/api/v1/connections/{conn.pk}/")
        assert response.status_code == 200 and response.json()["revoked"] is True
        revoke = responses.calls[-1].request
        assert parse_qs(revoke.body)["token"] == ["1//refresh-first"]
        assert not Connection.objects.filter(pk=conn.pk).exists()
        assert ProviderCall.objects.filter(provider="google_oauth", operation="token.revoke", outcome="ok").exists()

    @responses.activate
    def test_delete_takes_the_tokens_out_even_when_the_hub_is_no_longer_configured_for_google(
        self, google, user, user_client
    ):
        token_answer(responses)
        user_client.get(CALLBACK, {"state": query(start(user_client))["state"], "code": "c"})
        conn = Connection.objects.get(owner=user)
        google.GOOGLE_CLIENT_SECRET = ""  # the operator took Google out of the hub's settings since
        response = user_client.delete(f"/api/v1/connections/{conn.pk}/")
        assert response.status_code == 200, response.json()
        assert response.json()["revoked"] is False and "not configured for Google" in response.json()["detail"]
        assert not Connection.objects.filter(pk=conn.pk).exists()
        assert not ProviderCall.objects.filter(operation="token.revoke").exists()  # nothing was sent
