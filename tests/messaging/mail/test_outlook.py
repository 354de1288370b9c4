"""Outlook mail over Microsoft Graph with httpx, intercepted by respx."""

import base64
import json

import httpx
import pytest

from integrations.models import ProviderCall
from messaging.mail import mime

from .conftest import GRAPH, ms_conn

pytestmark = pytest.mark.django_db


def graph_message(n, **extra):
    return {
        "id": f"AAMk{n:04d}",
        "conversationId": f"conv{n}",
        "subject": f"Hello {n}",
        "from": {"emailAddress": {"name": f"Sender {n}", "address": f"s{n}@example.com"}},
        "toRecipients": [{"emailAddress": {"name": "Grace", "address": "grace@contoso.com"}}],
        "ccRecipients": [],
        "bodyPreview": f"Preview {n}",
        "receivedDateTime": "2026-12-01T10:00:00Z",
        "isRead": False,
        "flag": {"flagStatus": "notFlagged"},
        "parentFolderId": "inbox-id",
        "categories": [],
        "hasAttachments": False,
        "internetMessageId": f"<{n}@contoso.com>",
        **extra,
    }


def url(conn, rest=""):
    return f"/api/v1/mail/{conn.pk}/{rest}"


@pytest.mark.respx(base_url=GRAPH, assert_all_called=False)
class TestGraph:
    def test_a_page_of_50_is_one_request_with_attachment_metadata(self, respx_mock, graph_settings, user, user_client):
        route = respx_mock.get("/me/messages").mock(
            return_value=httpx.Response(
                200,
                json={
                    "value": [graph_message(n) for n in range(50)],
                    "@odata.nextLink": f"{GRAPH}/me/messages?$skip=50",
                },
            )
        )
        conn = ms_conn(user)
        body = user_client.get(url(conn, "messages/")).json()
        assert len(body["messages"]) == 50 and len(respx_mock.calls) <= 3
        sent = route.calls[0].request
        assert sent.headers["Authorization"] == "Bearer eyJ-graph-token"
        assert "attachments" in sent.url.params["$expand"] and sent.url.params["$top"] == "50"
        first = body["messages"][0]
        assert first["sender"]["email"] == "s0@example.com" and first["unread"] is True
        assert first["date"] == "2026-12-01T10:00:00+00:00"
        # The next page follows Graph's link; a token pointing anywhere else is refused, not followed.
        respx_mock.get("/me/messages", params={"$skip": "50"}).mock(
            return_value=httpx.Response(200, json={"value": []})
        )
        assert user_client.get(url(conn, "messages/"), {"page_token": body["next_page_token"]}).status_code == 200
        evil = base64.urlsafe_b64encode(b"https://evil.example/steal").decode()
        response = user_client.get(url(conn, "messages/"), {"page_token": evil})
        assert response.status_code == 400 and response.json()["error"] == "invalid_page_token"

    def test_search_uses_dollar_search(self, respx_mock, graph_settings, user, user_client):
        route = respx_mock.get("/me/messages").mock(return_value=httpx.Response(200, json={"value": []}))
        user_client.get(url(ms_conn(user), "messages/"), {"q": "invoice"})
        assert route.calls[0].request.url.params["$search"] == '"invoice"'

    def test_fetching_50_by_id_uses_three_batch_requests(self, respx_mock, graph_settings, user):
        from messaging.mail import services

        def answer(request):
            parts = json.loads(request.content)["requests"]
            assert len(parts) <= 20
            return httpx.Response(
                200,
                json={
                    "responses": [
                        {"id": p["id"], "status": 200, "body": graph_message(int(p["url"].split("AAMk")[1][:4]))}
                        for p in parts
                    ]
                },
            )

        route = respx_mock.post("/$batch").mock(side_effect=answer)
        conn = ms_conn(user)
        assert services.messages_fetch(connection_id=conn.pk, message_ids=[f"AAMk{n:04d}" for n in range(50)]) == 50
        assert route.call_count == 3

    def test_a_reply_with_attachment_is_sent_as_mime_and_parses_back(
        self, respx_mock, graph_settings, user, user_client
    ):
        original = graph_message(
            5,
            body={"contentType": "html", "content": "<p>hi</p>"},
            internetMessageHeaders=[{"name": "References", "value": "<root@contoso.com>"}],
        )
        respx_mock.get("/me/messages/AAMk0005").mock(return_value=httpx.Response(200, json=original))
        send = respx_mock.post("/me/sendMail").mock(return_value=httpx.Response(202))
        response = user_client.post(
            url(ms_conn(user), "messages/send/"),
            {
                "to": ["s5@example.com"],
                "text": "Reply",
                "attachments": [
                    {
                        "filename": "n.txt",
                        "content_type": "text/plain",
                        "content_base64": base64.b64encode(b"note").decode(),
                    }
                ],
                "reply_to_message_id": "AAMk0005",
            },
            format="json",
        )
        assert response.status_code == 202, response.content
        request = send.calls[0].request
        assert request.headers["Content-Type"] == "text/plain"
        sent = mime.parse(base64.b64decode(request.content))
        assert sent["In-Reply-To"] == "<5@contoso.com>" and sent["References"] == "<root@contoso.com> <5@contoso.com>"
        assert sent["Subject"] == "Re: Hello 5"
        [attachment] = list(sent.iter_attachments())
        assert attachment.get_filename() == "n.txt" and attachment.get_content() == "note"

    def test_an_attachment_over_graphs_limit_is_413_before_upload(
        self, respx_mock, graph_settings, user, user_client, settings
    ):
        settings.MAIL_MAX_ATTACHMENT_BYTES = {"gmail": 10_000, "outlook": 100}
        big = base64.b64encode(b"x" * 101).decode()
        response = user_client.post(
            url(ms_conn(user), "messages/send/"),
            {"to": ["a@example.com"], "attachments": [{"filename": "b", "content_base64": big}]},
            format="json",
        )
        assert response.status_code == 413 and len(respx_mock.calls) == 0

    def test_429_retry_after_is_honoured_and_the_mailbox_paused(self, respx_mock, graph_settings, user, user_client):
        from integrations import limiter

        respx_mock.get("/me/messages").mock(
            return_value=httpx.Response(
                429,
                headers={"Retry-After": "12"},
                json={"error": {"code": "ApplicationThrottled", "message": "slow down"}},
            )
        )
        conn = ms_conn(user)
        response = user_client.get(url(conn, "messages/"))
        assert response.status_code == 503 and int(response["Retry-After"]) >= 12
        assert limiter.blocked_for("outlook", f"mailbox:{conn.pk}") > 10
        assert ProviderCall.objects.get(provider="outlook").outcome == "rate_limited"
        # The next call does not reach Graph until the pause ends.
        assert user_client.get(url(conn, "messages/")).status_code == 503 and len(respx_mock.calls) == 1

    def test_modify_flags_reads_and_archives_by_moving(self, respx_mock, graph_settings, user, user_client):
        patch = respx_mock.patch("/me/messages/AAMk0001").mock(
            return_value=httpx.Response(200, json=graph_message(1, isRead=True))
        )
        move = respx_mock.post("/me/messages/AAMk0001/move").mock(
            return_value=httpx.Response(201, json=graph_message(1, id="AAMk-moved", parentFolderId="archive-id"))
        )
        response = user_client.post(
            url(ms_conn(user), "messages/AAMk0001/modify/"),
            {"read": True, "starred": True, "archive": True},
            format="json",
        )
        assert response.status_code == 200, response.content
        assert json.loads(patch.calls[0].request.content) == {"isRead": True, "flag": {"flagStatus": "flagged"}}
        assert json.loads(move.calls[0].request.content) == {"destinationId": "archive"}
        assert response.json()["id"] == "AAMk-moved"

    def test_folders_are_the_labels(self, respx_mock, graph_settings, user, user_client):
        respx_mock.get("/me/mailFolders").mock(
            return_value=httpx.Response(
                200, json={"value": [{"id": "f1", "displayName": "Inbox", "wellKnownName": "inbox"}]}
            )
        )
        create = respx_mock.post("/me/mailFolders").mock(
            return_value=httpx.Response(201, json={"id": "f2", "displayName": "Bills"})
        )
        conn = ms_conn(user)
        assert user_client.get(url(conn, "labels/")).json()["labels"] == [
            {"id": "f1", "name": "Inbox", "type": "system"}
        ]
        assert user_client.post(url(conn, "labels/"), {"name": "Bills"}, format="json").json()["id"] == "f2"
        assert json.loads(create.calls[0].request.content) == {"displayName": "Bills"}


@pytest.mark.redis
def test_no_more_than_four_requests_in_flight_per_mailbox():
    from integrations import limiter
    from integrations.errors import RateLimited

    slots = [limiter.concurrency_slot("outlook", "mailbox:1", 4) for _ in range(5)]
    for slot in slots[:4]:
        slot.__enter__()
    with pytest.raises(RateLimited):
        slots[4].__enter__()
    with limiter.concurrency_slot("outlook", "mailbox:2", 4):
        pass  # another mailbox is not affected
    slots[0].__exit__(None, None, None)
    with limiter.concurrency_slot("outlook", "mailbox:1", 4):
        pass
    for slot in slots[1:4]:
        slot.__exit__(None, None, None)
