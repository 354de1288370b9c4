"""The rest of the one mail API on Outlook: read one message, a thread, an attachment, drafts, folders, modify."""

import base64
import json
import time

import httpx
import pytest

from messaging.mail import mime

from .conftest import GRAPH, graph_left_out_folders, ms_conn
from .test_outlook import graph_message, url

pytestmark = [pytest.mark.django_db, pytest.mark.respx(base_url=GRAPH, assert_all_called=False)]


def test_a_message_is_read_with_its_body_and_reply_headers(respx_mock, graph_settings, user, user_client):
    route = respx_mock.get("/me/messages/AAMk0003").mock(
        return_value=httpx.Response(
            200,
            json=graph_message(
                3,
                body={"contentType": "html", "content": "<p>Body 3</p>"},
                internetMessageHeaders=[{"name": "References", "value": "<root@contoso.com>"}],
                hasAttachments=True,
                attachments=[{"id": "att1", "name": "r.pdf", "contentType": "application/pdf", "size": 12}],
            ),
        )
    )
    response = user_client.get(url(ms_conn(user), "messages/AAMk0003/"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["html"] == "<p>Body 3</p>" and body["text"] is None
    assert body["headers"] == {"message-id": "<3@contoso.com>", "references": "<root@contoso.com>"}
    assert body["date"] == "2026-12-01T10:00:00+00:00" and body["unread"] is True
    assert body["attachments"] == [{"id": "att1", "filename": "r.pdf", "mime_type": "application/pdf", "size": 12}]
    assert "raw" not in body  # the provider's payload is for staff
    assert "body" in route.calls[0].request.url.params["$select"]


def test_a_thread_is_the_conversation_oldest_first_even_with_an_undated_draft(
    respx_mock, graph_settings, user, user_client, monkeypatch
):
    # East of UTC, the oldest possible local time is before year 1: an undated message must still sort.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        later = graph_message(2, conversationId="conv1", receivedDateTime="2026-12-02T09:00:00Z")
        earlier = graph_message(1, conversationId="conv1", receivedDateTime="2026-12-01T09:00:00Z")
        draft = graph_message(9, conversationId="conv1", receivedDateTime=None)
        graph_left_out_folders(respx_mock)
        route = respx_mock.get("/me/messages").mock(
            return_value=httpx.Response(200, json={"value": [later, draft, earlier]})
        )
        response = user_client.get(url(ms_conn(user), "threads/conv1/"))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert response.status_code == 200, response.content
    assert [m["id"] for m in response.json()["messages"]] == ["AAMk0009", "AAMk0001", "AAMk0002"]
    assert route.calls[0].request.url.params["$filter"] == "conversationId eq 'conv1'"


def test_an_attachment_downloads_with_the_name_and_type_the_list_saw(respx_mock, graph_settings, user, user_client):
    conn = ms_conn(user)
    graph_left_out_folders(respx_mock)
    respx_mock.get("/me/messages").mock(
        return_value=httpx.Response(
            200,
            json={
                "value": [
                    graph_message(
                        4,
                        hasAttachments=True,
                        attachments=[{"id": "att7", "name": "plan.pdf", "contentType": "application/pdf", "size": 9}],
                    )
                ]
            },
        )
    )
    respx_mock.get("/me/messages/AAMk0004/attachments/att7/$value").mock(
        return_value=httpx.Response(200, content=b"%PDF-1.4\n")
    )
    assert user_client.get(url(conn, "messages/")).status_code == 200
    response = user_client.get(url(conn, "messages/AAMk0004/attachments/att7/"))
    assert response.status_code == 200
    assert response.content == b"%PDF-1.4\n"
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="plan.pdf"'


def test_an_attachment_keeps_its_name_and_type_after_a_delta_sync_recached_its_message(
    respx_mock, graph_settings, user, user_client
):
    from messaging.mail.models import Mailbox, MailMessage
    from messaging.mail.tasks import mail_sync

    conn = ms_conn(user)
    attachment = {"id": "att7", "name": "plan.pdf", "contentType": "application/pdf", "size": 9}
    graph_left_out_folders(respx_mock)
    respx_mock.get("/me/messages").mock(
        return_value=httpx.Response(
            200, json={"value": [graph_message(4, hasAttachments=True, attachments=[attachment])]}
        )
    )
    assert user_client.get(url(conn, "messages/")).status_code == 200
    # The message is read in Outlook: the inbox delta names it again, without attachments ($expand is not asked),
    # and the sync reads it again as the list does.
    Mailbox.objects.filter(connection=conn).update(delta_link=f"{GRAPH}/me/mailFolders/inbox/messages/delta?t=1")
    respx_mock.get("/me/mailFolders/inbox/messages/delta").mock(
        return_value=httpx.Response(
            200,
            json={
                "value": [graph_message(4, isRead=True, hasAttachments=True)],
                "@odata.deltaLink": f"{GRAPH}/me/mailFolders/inbox/messages/delta?t=2",
            },
        )
    )
    read_again = graph_message(4, isRead=True, hasAttachments=True, attachments=[attachment])
    respx_mock.post("/$batch").mock(
        return_value=httpx.Response(200, json={"responses": [{"id": "0", "status": 200, "body": read_again}]})
    )
    mail_sync(conn.pk)
    assert MailMessage.objects.get(external_id="AAMk0004").unread is False
    meta = respx_mock.get("/me/messages/AAMk0004/attachments/att7")
    respx_mock.get("/me/messages/AAMk0004/attachments/att7/$value").mock(
        return_value=httpx.Response(200, content=b"%PDF-1.4\n")
    )
    response = user_client.get(url(conn, "messages/AAMk0004/attachments/att7/"))
    assert response.status_code == 200 and response.content == b"%PDF-1.4\n"
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="plan.pdf"'
    assert not meta.called  # the cache names the file


def test_an_attachment_of_a_message_the_hub_never_cached_is_named_by_graph(
    respx_mock, graph_settings, user, user_client
):
    conn = ms_conn(user)
    attachment = {"id": "att7", "name": "plan.pdf", "contentType": "application/pdf", "size": 9}
    meta = respx_mock.get("/me/messages/AAMk0004/attachments/att7").mock(
        return_value=httpx.Response(200, json=attachment)
    )
    respx_mock.get("/me/messages/AAMk0004/attachments/att7/$value").mock(
        return_value=httpx.Response(200, content=b"%PDF-1.4\n")
    )
    response = user_client.get(url(conn, "messages/AAMk0004/attachments/att7/"))
    assert response.status_code == 200 and response.content == b"%PDF-1.4\n"
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="plan.pdf"'
    assert "contentBytes" not in meta.calls.last.request.url.params["$select"]  # its name, not its bytes twice


@pytest.mark.parametrize(
    ("name", "disposition"),
    [
        ("отчёт 2026.pdf", "attachment; filename*=utf-8''%D0%BE%D1%82%D1%87%D1%91%D1%82%202026.pdf"),
        ("報告🎉.pdf", "attachment; filename*=utf-8''%E5%A0%B1%E5%91%8A%F0%9F%8E%89.pdf"),
    ],
)
def test_an_attachment_name_the_sender_chose_stays_a_valid_attachment_header(
    respx_mock, graph_settings, user, user_client, name, disposition
):
    conn = ms_conn(user)
    attachment = {"id": "att8", "name": name, "contentType": "text/html", "size": 9}
    graph_left_out_folders(respx_mock)
    respx_mock.get("/me/messages").mock(
        return_value=httpx.Response(
            200, json={"value": [graph_message(5, hasAttachments=True, attachments=[attachment])]}
        )
    )
    respx_mock.get("/me/messages/AAMk0005/attachments/att8/$value").mock(
        return_value=httpx.Response(200, content=b"<p>hi</p>")
    )
    assert user_client.get(url(conn, "messages/")).status_code == 200
    response = user_client.get(url(conn, "messages/AAMk0005/attachments/att8/"))
    assert response.status_code == 200
    # Before, a name outside Latin-1 turned the whole header into "=?utf-8?b?...?=": no longer an attachment.
    assert response["Content-Disposition"] == disposition


def test_drafts_are_created_with_attachments_listed_and_deleted(respx_mock, graph_settings, user, user_client):
    conn = ms_conn(user)
    create = respx_mock.post("/me/messages").mock(
        return_value=httpx.Response(
            201, json={"id": "AAMkD1", "conversationId": "convD", "subject": "Plan", "isDraft": True}
        )
    )
    listed = respx_mock.get("/me/mailFolders/drafts/messages").mock(
        return_value=httpx.Response(200, json={"value": [graph_message(11, id="AAMkD1", subject="Plan")]})
    )
    deleted = respx_mock.delete("/me/messages/AAMkD1").mock(return_value=httpx.Response(204))
    response = user_client.post(
        url(conn, "drafts/"),
        {
            "to": ["a@example.com"],
            "subject": "Plan",
            "text": "See attached",
            "attachments": [
                {"filename": "p.txt", "content_type": "text/plain", "content_base64": base64.b64encode(b"p1").decode()}
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["id"] == "AAMkD1"
    made = mime.parse(base64.b64decode(create.calls[0].request.content))
    assert made["Subject"] == "Plan" and made["To"] == "a@example.com"
    [attachment] = list(made.iter_attachments())
    assert attachment.get_filename() == "p.txt" and attachment.get_content() == "p1"
    drafts = user_client.get(url(conn, "drafts/")).json()
    assert [d["id"] for d in drafts["drafts"]] == ["AAMkD1"] and listed.called
    assert user_client.delete(url(conn, "drafts/AAMkD1/")).status_code == 204
    assert deleted.called


def test_a_folder_is_renamed_and_deleted(respx_mock, graph_settings, user, user_client):
    conn = ms_conn(user)
    rename = respx_mock.patch("/me/mailFolders/f2").mock(
        return_value=httpx.Response(200, json={"id": "f2", "displayName": "Receipts"})
    )
    delete = respx_mock.delete("/me/mailFolders/f2").mock(return_value=httpx.Response(204))
    response = user_client.patch(url(conn, "labels/f2/"), {"name": "Receipts"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"id": "f2", "name": "Receipts", "type": "user"}
    assert json.loads(rename.calls[0].request.content) == {"displayName": "Receipts"}
    assert user_client.delete(url(conn, "labels/f2/")).status_code == 204
    assert delete.called


@pytest.mark.parametrize(
    "changes,patch,destination",
    [
        ({"read": False, "trash": True}, {"isRead": False}, "deleteditems"),
        ({"starred": False}, {"flag": {"flagStatus": "notFlagged"}}, None),
        ({"add_labels": ["f2"]}, None, "f2"),
        ({"remove_labels": ["f2"]}, None, "inbox"),
        ({"trash": False}, None, "inbox"),
    ],
)
def test_modify_unread_unflag_trash_and_labels_as_folders(
    changes, patch, destination, respx_mock, graph_settings, user, user_client
):
    patched = respx_mock.patch("/me/messages/AAMk0001").mock(return_value=httpx.Response(200, json=graph_message(1)))
    moved = respx_mock.post("/me/messages/AAMk0001/move").mock(
        return_value=httpx.Response(201, json=graph_message(1, id="AAMk-new", parentFolderId=destination or "x"))
    )
    response = user_client.post(url(ms_conn(user), "messages/AAMk0001/modify/"), changes, format="json")
    assert response.status_code == 200, response.content
    assert [json.loads(c.request.content) for c in patched.calls] == ([patch] if patch else [])
    assert [json.loads(c.request.content) for c in moved.calls] == (
        [{"destinationId": destination}] if destination else []
    )
    assert response.json()["id"] == ("AAMk-new" if destination else "AAMk0001")


def test_another_users_outlook_connection_is_404_and_graph_is_not_called(
    respx_mock, graph_settings, user, other_user, client_for
):
    conn = ms_conn(user)
    response = client_for(other_user).get(url(conn, "messages/AAMk0001/"))
    assert response.status_code == 404
    assert not respx_mock.calls


def test_the_inbox_listed_from_the_cache_after_a_delta_reads_as_graph_lists_it(
    respx_mock, graph_settings, user, user_client
):
    """The same Outlook message, listed from Graph and then from the cache a push's delta sync kept, came back
    different: Graph's delta names a message whose read state changed with only id, isRead and parentFolderId
    (it does not honour $select for such changes), and the sync cached that as a message without subject, sender
    or date; the delta names no attachments; and the cache kept no Bcc and no Message-ID (headers)."""
    from datetime import timedelta

    from django.utils import timezone

    from messaging.mail.models import Mailbox
    from messaging.mail.tasks import mail_sync

    conn = ms_conn(user)
    Mailbox.objects.create(
        connection=conn,
        subscription_id="sub-1",
        subscription_expires_at=timezone.now() + timedelta(days=2),
        delta_link=f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=1",
    )
    outlook = {"isRead": False}

    def message():
        return graph_message(
            4,
            hasAttachments=True,
            bccRecipients=[{"emailAddress": {"name": "Audit", "address": "audit@contoso.com"}}],
            attachments=[{"id": "att7", "name": "plan.pdf", "contentType": "application/pdf", "size": 9}],
            **outlook,
        )

    respx_mock.get("/me/mailFolders/inbox/messages").mock(
        side_effect=lambda request: httpx.Response(200, json={"value": [message()]})
    )

    def batch(request):
        parts = json.loads(request.content)["requests"]
        assert all("$expand=attachments" in p["url"] for p in parts)  # as the list asks
        return httpx.Response(
            200, json={"responses": [{"id": p["id"], "status": 200, "body": message()} for p in parts]}
        )

    respx_mock.post("/$batch").mock(side_effect=batch)
    listed = user_client.get(url(conn, "messages/"), {"label": "inbox"}).json()  # not synced yet: from Graph
    assert listed["source"] == "provider"

    outlook["isRead"] = True  # read in Outlook; the delta names it with the changed property alone
    respx_mock.get("/me/mailFolders/inbox/messages/delta").mock(
        return_value=httpx.Response(
            200,
            json={
                "value": [{"id": "AAMk0004", "isRead": True, "parentFolderId": "inbox-id"}],
                "@odata.deltaLink": f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=2",
            },
        )
    )
    mail_sync(conn.pk)
    cached = user_client.get(url(conn, "messages/"), {"label": "inbox"}).json()
    assert cached["source"] == "cache"
    Mailbox.objects.filter(connection=conn).update(last_synced_at=None)
    fresh = user_client.get(url(conn, "messages/"), {"label": "inbox"}).json()
    assert fresh["source"] == "provider"
    assert cached["messages"] == fresh["messages"]
    [read] = cached["messages"]
    assert read["unread"] is False and read["subject"] == "Hello 4" and read["attachments"][0]["id"] == "att7"
