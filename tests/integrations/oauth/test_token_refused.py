"""A provider API refuses an access token before its expiry (401: revoked early, rotated): the hub refreshes
once and sends the request again, instead of failing every call until the stored expiry passes."""

import json

import httpx
import pytest
import responses
from django.utils import timezone

from integrations.models import Alert, Connection, ProviderCall
from tests.messaging.mail.fake_gmail import FakeGmail, make_message

from .conftest import GOOGLE_TOKEN_URL
from .test_refresh import RotatingTokenEndpoint, google_connection, ms_connection

pytestmark = pytest.mark.django_db

GRAPH = "https://graph.microsoft.test/v1.0"
INVALID_TOKEN = {
    "error": {"code": "InvalidAuthenticationToken", "message": "Lifetime validation failed, the token is expired."}
}


def messages(conn):
    return f"/api/v1/mail/{conn.pk}/messages/"


def refreshes(provider):
    return ProviderCall.objects.filter(provider=provider, operation="token.refresh").count()


@pytest.fixture
def gmail(google):
    fake = FakeGmail()
    google.GMAIL_API_BASE = fake.base
    yield fake
    fake.stop()


@pytest.fixture
def graph(idp, settings, respx_mock):
    settings.GRAPH_API_BASE = GRAPH
    return respx_mock


def graph_accepting(graph, token):
    seen = []

    def answer(request):
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] != f"Bearer {token}":
            return httpx.Response(401, json=INVALID_TOKEN)
        if "/mailFolders/" in request.url.path:  # the folders a list without label leaves out, asked for first
            return httpx.Response(200, json={"id": request.url.path.rsplit("/", 1)[1] + "-id"})
        return httpx.Response(200, json={"value": []})

    graph.get(f"{GRAPH}/me/messages").mock(side_effect=answer)
    graph.get(url__regex=rf"{GRAPH}/me/mailFolders/(deleteditems|junkemail)(\?.*)?$").mock(side_effect=answer)
    return seen


class TestGraph:
    def test_a_401_refreshes_once_and_the_request_goes_again_with_the_new_token(self, graph, idp, user, user_client):
        conn = ms_connection(user, expires_in=3000)  # 50 minutes left: no refresh is due
        idp.token_responses = [RotatingTokenEndpoint("M.R_0")]
        seen = graph_accepting(graph, "access-1")
        response = user_client.get(messages(conn))
        assert response.status_code == 200, response.content
        # The first request (a folder's id) refused, then it and the two after it with the new token.
        assert seen == ["Bearer old-access", "Bearer access-1", "Bearer access-1", "Bearer access-1"]
        assert refreshes("microsoft_oauth") == 1
        conn.refresh_from_db()
        assert conn.access_token == "access-1" and conn.refresh_token == "M.R_1" and conn.status == "active"

    def test_a_refused_refresh_after_a_401_needs_reauth(self, graph, idp, user, user_client):
        conn = ms_connection(user, expires_in=3000, refresh_token="M.R_revoked")
        idp.token_responses = [RotatingTokenEndpoint("M.R_0")]  # M.R_revoked is invalid_grant
        graph_accepting(graph, "access-1")
        response = user_client.get(messages(conn))
        assert response.status_code == 409, response.content
        assert response.json()["error"] == "connection_needs_reauth" and response.json()["authorization_url"]
        conn.refresh_from_db()
        assert conn.status == "needs_reauth"
        assert Alert.objects.filter(kind="connection_reauth").count() == 1

    def test_a_new_token_refused_too_is_the_apis_error_after_one_refresh_not_a_loop(
        self, graph, idp, user, user_client
    ):
        conn = ms_connection(user, expires_in=3000)
        idp.token_responses = [RotatingTokenEndpoint("M.R_0")]
        seen = graph_accepting(graph, "a-token-graph-never-accepts")
        response = user_client.get(messages(conn))
        assert 400 <= response.status_code < 600 and response.status_code != 500, response.content
        assert seen == ["Bearer old-access", "Bearer access-1"]
        assert refreshes("microsoft_oauth") == 1


class TestGmail:
    @responses.activate
    def test_a_401_refreshes_once_and_the_request_goes_again_with_the_new_token(self, gmail, user, user_client):
        gmail.add(make_message(1))
        conn = google_connection(user, expires_in=3000)
        gmail.refused_tokens.add("ya29.old")
        responses.add(
            responses.POST,
            GOOGLE_TOKEN_URL,
            json={"access_token": "ya29.new", "expires_in": 3599, "token_type": "Bearer"},
        )
        response = user_client.get(messages(conn))
        assert response.status_code == 200, response.content
        assert [m["id"] for m in response.json()["messages"]] == ["m00001"]
        assert refreshes("google_oauth") == 1
        conn.refresh_from_db()
        assert conn.access_token == "ya29.new" and conn.status == "active"
        assert conn.expires_at > timezone.now()

    @responses.activate
    def test_a_refused_refresh_after_a_401_needs_reauth(self, gmail, user, user_client):
        conn = google_connection(user, expires_in=3000)
        gmail.refused_tokens.add("ya29.old")
        responses.add(
            responses.POST,
            GOOGLE_TOKEN_URL,
            status=400,
            body=json.dumps({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
            content_type="application/json",
        )
        response = user_client.get(messages(conn))
        assert response.status_code == 409, response.content
        assert response.json()["error"] == "connection_needs_reauth"
        conn.refresh_from_db()
        assert conn.status == "needs_reauth"

    @responses.activate
    def test_a_new_token_refused_too_is_gmails_error_after_one_refresh(self, gmail, user, user_client):
        conn = google_connection(user, expires_in=3000)
        gmail.refused_tokens.update({"ya29.old", "ya29.new"})
        responses.add(
            responses.POST,
            GOOGLE_TOKEN_URL,
            json={"access_token": "ya29.new", "expires_in": 3599, "token_type": "Bearer"},
        )
        response = user_client.get(messages(conn))
        assert 400 <= response.status_code < 600 and response.status_code != 500, response.content
        assert refreshes("google_oauth") == 1
        assert Connection.objects.get(pk=conn.pk).status == "active"
