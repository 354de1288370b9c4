"""Outlook's cached list answers what Graph answers: the folders it covers, the attachments a message has."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from messaging.mail.models import Mailbox
from messaging.mail.tasks import mail_sync

from .conftest import GRAPH, graph_left_out_folders, ms_conn
from .test_outlook import graph_message

pytestmark = [pytest.mark.django_db, pytest.mark.respx(base_url=GRAPH, assert_all_called=False)]

DELTA = "/me/mailFolders/inbox/messages/delta"


def url(conn, rest=""):
    return f"/api/v1/mail/{conn.pk}/{rest}"


def listed(client, conn, **params):
    response = client.get(url(conn, "messages/"), params)
    assert response.status_code == 200, response.content
    body = response.json()
    return body["source"], [m["id"] for m in body["messages"]]


def delta_answers(respx_mock, *items):
    respx_mock.get(DELTA).mock(
        return_value=httpx.Response(
            200, json={"value": list(items), "@odata.deltaLink": f"{GRAPH}{DELTA}?$deltatoken=1"}
        )
    )


def pushed_mailbox(conn):
    """The mailbox as a `POST sync/` leaves it, push on (the sync itself runs in the test)."""
    Mailbox.objects.update_or_create(
        connection=conn,
        defaults={"subscription_id": "sub-1", "subscription_expires_at": timezone.now() + timedelta(days=2)},
    )


def test_a_list_without_label_is_every_folder_fresh_or_while_push_keeps_the_inbox(
    respx_mock, graph_settings, user, user_client
):
    """Graph's GET /me/messages lists every folder; the fresh cache, which push keeps for the inbox alone,
    answered the same request with the inbox: a client got one set or the other depending on push."""
    conn = ms_conn(user)
    everywhere = [graph_message(1), graph_message(2, parentFolderId="archive-id")]
    graph_left_out_folders(respx_mock)
    respx_mock.get("/me/messages").mock(return_value=httpx.Response(200, json={"value": everywhere}))
    assert listed(user_client, conn) == ("provider", ["AAMk0001", "AAMk0002"])

    pushed_mailbox(conn)
    delta_answers(respx_mock, graph_message(1))
    mail_sync(conn.pk)
    assert listed(user_client, conn) == ("provider", ["AAMk0001", "AAMk0002"])


def test_the_cached_inbox_holds_what_the_sync_holds_and_no_row_of_another_folder(
    respx_mock, graph_settings, user, user_client
):
    """The cache also holds what listings put there: messages of other folders (never synced again) and an inbox
    message listed before push began that left the inbox before the first sync (which pruned nothing). The
    cached list answered them as inbox messages."""
    conn = ms_conn(user)
    graph_left_out_folders(respx_mock)
    respx_mock.get("/me/messages").mock(
        return_value=httpx.Response(
            200,
            json={
                "value": [
                    graph_message(1),
                    graph_message(2, parentFolderId="archive-id"),
                    graph_message(3),  # moved to the archive before push began
                ]
            },
        )
    )
    assert listed(user_client, conn)[1] == ["AAMk0001", "AAMk0002", "AAMk0003"]  # fresh, and cached
    pushed_mailbox(conn)
    delta_answers(respx_mock, graph_message(1))
    mail_sync(conn.pk)

    assert listed(user_client, conn, label="inbox") == ("cache", ["AAMk0001"])
    assert listed(user_client, conn, label="Inbox") == ("cache", ["AAMk0001"])
    assert listed(user_client, conn, label="inbox-id") == ("cache", ["AAMk0001"])
    # What Graph answers for the inbox, once the cache is no longer fresh:
    respx_mock.get("/me/mailFolders/inbox/messages").mock(
        return_value=httpx.Response(200, json={"value": [graph_message(1)]})
    )
    Mailbox.objects.filter(connection=conn).update(last_synced_at=None)
    assert listed(user_client, conn, label="inbox") == ("provider", ["AAMk0001"])


def test_an_inbox_whose_folder_id_the_sync_never_saw_is_read_from_graph(respx_mock, graph_settings, user, user_client):
    """An empty inbox names no folder id in its delta: the cache cannot tell the inbox's rows from others."""
    conn = ms_conn(user)
    pushed_mailbox(conn)
    delta_answers(respx_mock)
    mail_sync(conn.pk)
    inbox = respx_mock.get("/me/mailFolders/inbox/messages").mock(
        return_value=httpx.Response(200, json={"value": [graph_message(5)]})
    )
    assert listed(user_client, conn, label="inbox") == ("provider", ["AAMk0005"]) and inbox.called


def test_a_complete_delta_item_with_attachments_is_cached_with_them(respx_mock, graph_settings, user, user_client):
    """Graph's delta names a new message with every property asked for, `hasAttachments` among them, but no
    attachment list (the delta query expands nothing): the cache kept it with none, so the cached inbox listed the
    message without its files while Graph's own list (and the download) named them."""
    import json

    conn = ms_conn(user)
    pushed_mailbox(conn)
    files = [{"id": "att1", "name": "plan.pdf", "contentType": "application/pdf", "size": 2048}]
    with_files = graph_message(1, hasAttachments=True, attachments=files)
    older = graph_message(2, receivedDateTime="2026-11-30T10:00:00Z")
    respx_mock.get("/me/mailFolders/inbox/messages").mock(
        return_value=httpx.Response(200, json={"value": [with_files, older]})
    )

    def batch(request):
        parts = json.loads(request.content)["requests"]
        assert all("$expand=attachments" in p["url"] for p in parts)
        return httpx.Response(
            200, json={"responses": [{"id": p["id"], "status": 200, "body": with_files} for p in parts]}
        )

    reread = respx_mock.post("/$batch").mock(side_effect=batch)
    delta_answers(respx_mock, graph_message(1, hasAttachments=True), older)
    mail_sync(conn.pk)

    cached = user_client.get(url(conn, "messages/"), {"label": "inbox"}).json()
    Mailbox.objects.filter(connection=conn).update(last_synced_at=None)
    fresh = user_client.get(url(conn, "messages/"), {"label": "inbox"}).json()
    assert (cached["source"], fresh["source"]) == ("cache", "provider")
    assert cached["messages"] == fresh["messages"]
    assert cached["messages"][0]["attachments"] == [
        {"id": "att1", "filename": "plan.pdf", "mime_type": "application/pdf", "size": 2048}
    ]
    # Only the message that has files was read again.
    assert reread.call_count == 1
    assert [p["url"].split("?")[0] for p in json.loads(reread.calls[0].request.content)["requests"]] == [
        "/me/messages/AAMk0001"
    ]
