"""Outlook mail over Microsoft Graph with httpx, intercepted by respx."""

import base64
import json
import os
import re

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from integrations.models import ProviderCall
from messaging.mail import mime

from .conftest import GRAPH, graph_left_out_folders, ms_conn

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
        graph_left_out_folders(respx_mock)
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
        assert len(body["messages"]) == 50 and route.call_count == 1
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
        graph_left_out_folders(respx_mock)
        route = respx_mock.get("/me/messages").mock(return_value=httpx.Response(200, json={"value": []}))
        user_client.get(url(ms_conn(user), "messages/"), {"q": "invoice"})
        assert route.calls[0].request.url.params["$search"] == '"invoice"'

    @pytest.mark.parametrize("q", ['subject:"Q3 plan"', 'say "hi"', "C:\\temp\\", 'a \\" b'])
    def test_a_search_holding_double_quotes_or_backslashes_reaches_graph_as_typed(
        self, q, respx_mock, graph_settings, user, user_client
    ):
        """Graph's $search is one OData search phrase: inside its double quotes a `"` or `\\` is written `\\"`
        or `\\\\` (OData ABNF, qchar-no-AMP-DQUOTE), anything else is a syntax error. The hub put q between
        quotes as it was, so a search for a phrase (subject:"Q3 plan") was a 400 from Graph and a 502 here."""
        searched = []

        def graph_search(request):
            value = request.url.params["$search"]
            phrase = re.fullmatch(r'"((?:[^"\\]|\\["\\])*)"', value)
            if phrase is None:
                return httpx.Response(
                    400,
                    json={"error": {"code": "BadRequest", "message": f"Syntax error: not valid in '{value}'."}},
                )
            searched.append(re.sub(r'\\(["\\])', r"\1", phrase.group(1)))
            return httpx.Response(200, json={"value": [graph_message(1)]})

        graph_left_out_folders(respx_mock)
        respx_mock.get("/me/messages").mock(side_effect=graph_search)
        response = user_client.get(url(ms_conn(user), "messages/"), {"q": q})
        assert response.status_code == 200, response.content
        assert searched == [q]  # the KQL Graph reads is what the client typed
        assert [m["id"] for m in response.json()["messages"]] == ["AAMk0001"]

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
        create = respx_mock.post("/me/messages").mock(
            return_value=httpx.Response(
                201, json={"id": "AAMkDraft", "conversationId": "conv5", "internetMessageId": "<draft@contoso.com>"}
            )
        )
        send = respx_mock.post("/me/messages/AAMkDraft/send").mock(return_value=httpx.Response(202))
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
        # Created as a draft with an immutable id, then sent: that id is the sent message's in Sent Items.
        assert response.json() == {"id": "AAMkDraft", "thread_id": "conv5", "message_id": "<draft@contoso.com>"}
        assert send.called
        request = create.calls[0].request
        assert request.headers["Content-Type"] == "text/plain"
        assert request.headers["Prefer"] == 'IdType="ImmutableId"'
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

        graph_left_out_folders(respx_mock)
        route = respx_mock.get("/me/messages").mock(
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
        assert ProviderCall.objects.get(provider="outlook", operation="messages.list").outcome == "rate_limited"
        # The next call does not reach Graph until the pause ends.
        assert user_client.get(url(conn, "messages/")).status_code == 503 and route.call_count == 1

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


UPLOAD_URL = "https://outlook.office.test/api/v2.0/Users('u1')/Messages('AAMkDraft')/AttachmentSessions('s1')?authtoken=eyJ-session"


@pytest.mark.respx(assert_all_called=False)  # Graph and the upload host: full URLs
class TestLargeAttachments:
    """Above GRAPH_INLINE_ATTACHMENT_BYTES files go to the draft one by one; large ones by upload session."""

    @pytest.fixture(autouse=True)
    def _small_thresholds(self, settings):
        settings.GRAPH_INLINE_ATTACHMENT_BYTES = 100 * 1024
        settings.GRAPH_UPLOAD_CHUNK_BYTES = 320 * 1024

    @pytest.fixture
    def graph(self, respx_mock, graph_settings):
        state = {"puts": [], "posted": []}
        state["create"] = respx_mock.post(f"{GRAPH}/me/messages").mock(
            return_value=httpx.Response(
                201,
                json={"id": "AAMkDraft", "conversationId": "conv-9", "internetMessageId": "<d9@contoso.com>"},
            )
        )

        def attachment_added(request):
            state["posted"].append(json.loads(request.content))
            return httpx.Response(201, json={"id": f"att{len(state['posted'])}"})

        state["add"] = respx_mock.post(f"{GRAPH}/me/messages/AAMkDraft/attachments").mock(side_effect=attachment_added)
        state["session"] = respx_mock.post(f"{GRAPH}/me/messages/AAMkDraft/attachments/createUploadSession").mock(
            return_value=httpx.Response(
                201,
                json={
                    "uploadUrl": UPLOAD_URL,
                    "expirationDateTime": "2026-12-03T10:00:00Z",
                    "nextExpectedRanges": ["0-"],
                },
            )
        )

        def chunk(request):
            state["puts"].append((request.headers["Content-Range"], len(request.content), request))
            start, end_total = request.headers["Content-Range"][len("bytes ") :].split("-")
            end, total = (int(x) for x in end_total.split("/"))
            if end + 1 == total:
                return httpx.Response(201, headers={"Location": "https://outlook.office.test/attachments/att-big"})
            return httpx.Response(200, json={"nextExpectedRanges": [f"{end + 1}-"]})

        state["put"] = respx_mock.put(url__startswith="https://outlook.office.test/").mock(side_effect=chunk)
        state["send"] = respx_mock.post(f"{GRAPH}/me/messages/AAMkDraft/send").mock(return_value=httpx.Response(202))
        state["delete"] = respx_mock.delete(f"{GRAPH}/me/messages/AAMkDraft").mock(return_value=httpx.Response(204))
        return state

    def _form(self, client, path, data, files, method="post"):
        return getattr(client, method)(path, {"message": json.dumps(data), "attachments": files}, format="multipart")

    def test_a_large_file_goes_up_in_320_kib_chunks_without_our_token_and_the_sent_id_comes_back(
        self, graph, user, user_client
    ):
        blob = os.urandom(700 * 1024)
        files = [
            SimpleUploadedFile("big.bin", blob, content_type="application/octet-stream"),
            SimpleUploadedFile("note.txt", b"hello", content_type="text/plain"),
        ]
        response = self._form(
            user_client, url(ms_conn(user), "messages/send/"), {"to": ["a@example.com"], "text": "x"}, files
        )
        assert response.status_code == 202, response.content
        assert response.json() == {"id": "AAMkDraft", "thread_id": "conv-9", "message_id": "<d9@contoso.com>"}
        ranges = [r for r, _, _ in graph["puts"]]
        assert ranges == [
            f"bytes 0-327679/{len(blob)}",
            f"bytes 327680-655359/{len(blob)}",
            f"bytes 655360-716799/{len(blob)}",
        ]
        assert all("authorization" not in req.headers for _, _, req in graph["puts"])
        assert b"".join(req.content for _, _, req in graph["puts"]) == blob
        session = json.loads(graph["session"].calls[0].request.content)
        assert session == {
            "AttachmentItem": {
                "attachmentType": "file",
                "name": "big.bin",
                "size": len(blob),
                "contentType": "application/octet-stream",
            }
        }
        # The small file was added as a fileAttachment; the draft's MIME carried neither.
        [small] = graph["posted"]
        assert small["name"] == "note.txt" and base64.b64decode(small["contentBytes"]) == b"hello"
        draft_mime = mime.parse(base64.b64decode(graph["create"].calls[0].request.content))
        assert list(draft_mime.iter_attachments()) == []
        assert graph["send"].called and not graph["delete"].called
        assert ProviderCall.objects.filter(provider="outlook", operation="attachments.upload").count() == 3

    def test_files_that_fit_stay_inside_the_mime_in_one_request(self, graph, user, user_client):
        files = [SimpleUploadedFile("a.txt", b"a" * 1000), SimpleUploadedFile("b.txt", b"b" * 1000)]
        response = self._form(user_client, url(ms_conn(user), "messages/send/"), {"to": ["a@example.com"]}, files)
        assert response.status_code == 202, response.content
        assert not graph["add"].called and not graph["session"].called
        draft_mime = mime.parse(base64.b64decode(graph["create"].calls[0].request.content))
        assert [a.get_filename() for a in draft_mime.iter_attachments()] == ["a.txt", "b.txt"]

    def test_a_failed_upload_deletes_the_draft_and_nothing_is_sent(self, graph, respx_mock, user, user_client):
        graph["put"].mock(side_effect=None, return_value=httpx.Response(400, json={"error": {"code": "InvalidRange"}}))
        files = [SimpleUploadedFile("big.bin", os.urandom(400 * 1024))]
        response = self._form(user_client, url(ms_conn(user), "messages/send/"), {"to": ["a@example.com"]}, files)
        assert response.status_code >= 400
        assert graph["delete"].called and not graph["send"].called

    def test_over_150_mb_is_a_413_before_any_upload(self, graph, respx_mock, user, user_client, settings):
        settings.MAIL_MAX_ATTACHMENT_BYTES = {"gmail": 1000, "outlook": 500 * 1024}  # scaled down
        files = [
            SimpleUploadedFile("a.bin", os.urandom(300 * 1024)),
            SimpleUploadedFile("b.bin", os.urandom(300 * 1024)),
        ]
        response = self._form(user_client, url(ms_conn(user), "messages/send/"), {"to": ["a@example.com"]}, files)
        assert response.status_code == 413 and response.json()["error"] == "attachment_too_large"
        assert len(respx_mock.calls) == 0

    def test_a_draft_update_replaces_its_attachments(self, graph, respx_mock, user, user_client):
        patch = respx_mock.patch(f"{GRAPH}/me/messages/AAMkDraft").mock(
            return_value=httpx.Response(200, json={"id": "AAMkDraft", "subject": "v2", "conversationId": "conv-9"})
        )
        respx_mock.get(f"{GRAPH}/me/messages/AAMkDraft/attachments").mock(
            return_value=httpx.Response(200, json={"value": [{"id": "old-1"}, {"id": "old-2"}]})
        )
        removed = respx_mock.delete(url__regex=r".*/me/messages/AAMkDraft/attachments/old-\d$").mock(
            return_value=httpx.Response(204)
        )
        files = [
            SimpleUploadedFile("new.txt", b"fresh", content_type="text/plain"),
            SimpleUploadedFile("big.bin", os.urandom(200 * 1024)),
        ]
        response = self._form(
            user_client,
            url(ms_conn(user), "drafts/AAMkDraft/"),
            {"to": ["a@example.com"], "subject": "v2", "text": "t"},
            files,
            "put",
        )
        assert response.status_code == 200, response.content
        assert json.loads(patch.calls[0].request.content)["subject"] == "v2"
        assert removed.call_count == 2
        assert [p["name"] for p in graph["posted"]] == ["new.txt"]
        assert graph["session"].called and len(graph["puts"]) == 1

    def test_a_mail_send_only_connection_uses_send_mail_and_cannot_send_large_files(
        self, graph, respx_mock, user, user_client
    ):
        conn = ms_conn(user, scopes=("Mail.Send", "Mail.Read"))
        send_mail = respx_mock.post(f"{GRAPH}/me/sendMail").mock(return_value=httpx.Response(202))
        small = user_client.post(url(conn, "messages/send/"), {"to": ["a@example.com"], "text": "x"}, format="json")
        assert small.status_code == 202 and small.json()["id"] == "" and send_mail.called
        files = [SimpleUploadedFile("big.bin", os.urandom(200 * 1024))]
        large = self._form(user_client, url(conn, "messages/send/"), {"to": ["a@example.com"]}, files)
        assert large.status_code == 403 and large.json()["missing_scopes"] == ["Mail.ReadWrite"]

    def test_sending_a_draft_returns_its_id_thread_and_message_id(self, graph, respx_mock, user, user_client):
        respx_mock.get(f"{GRAPH}/me/messages/AAMkDraft").mock(
            return_value=httpx.Response(
                200,
                json={
                    "id": "AAMkDraft",
                    "conversationId": "conv-9",
                    "internetMessageId": "<d9@contoso.com>",
                    "isDraft": True,
                },
            )
        )
        response = user_client.post(url(ms_conn(user), "drafts/AAMkDraft/send/"))
        assert response.status_code == 202, response.content
        assert response.json() == {"id": "AAMkDraft", "thread_id": "conv-9", "message_id": "<d9@contoso.com>"}
        assert graph["send"].called
