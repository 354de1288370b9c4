"""Mail: header fields are one line (a 400); an expired Graph delta restarts; Gmail spam and trash stay out of the cached list; Outlook read and flag cached right."""

import base64

import pytest

from .conftest import google_conn

pytestmark = pytest.mark.django_db


def url(conn, rest=""):
    return f"/api/v1/mail/{conn.pk}/{rest}"


class TestHeaderInjectionIsAClean400:
    def test_a_subject_with_a_line_break_is_a_400_not_a_500(self, gmail, user, user_client):
        conn = google_conn(user)
        response = user_client.post(
            url(conn, "messages/send/"),
            {"to": ["a@example.com"], "subject": "Hello\r\nBcc: victim@example.com", "text": "x"},
            format="json",
        )
        assert response.status_code == 400, (response.status_code, response.content[:300])
        assert response.json()["field"] == "subject"
        assert gmail.sent == []

    def test_an_attachment_name_with_a_line_break_is_a_400_not_a_500(self, gmail, user, user_client):
        conn = google_conn(user)
        response = user_client.post(
            url(conn, "messages/send/"),
            {
                "to": ["a@example.com"],
                "text": "x",
                "attachments": [
                    {"filename": "a.pdf\r\nX-Evil: 1", "content_base64": base64.b64encode(b"pdf").decode()}
                ],
            },
            format="json",
        )
        assert response.status_code == 400, (response.status_code, response.content[:300])
        assert gmail.sent == []


@pytest.mark.respx(base_url="https://graph.microsoft.test/v1.0", assert_all_called=False)
class TestGraphDeltaReset:
    def test_an_expired_delta_link_410_restarts_the_sync_instead_of_failing_forever(
        self, respx_mock, graph_settings, user
    ):
        """Graph answers 410 Gone (syncStateNotFound) to a delta link it has evicted; the app must start over."""
        import httpx

        from messaging.mail.models import Mailbox, MailMessage
        from messaging.mail.services import mailbox_sync

        from .conftest import GRAPH, ms_conn

        conn = ms_conn(user)
        mailbox = Mailbox.objects.create(
            connection=conn,
            subscription_id="sub-1",
            client_state="s3cret",
            delta_link=f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=evicted",
        )
        MailMessage.objects.create(mailbox=mailbox, external_id="AAMk-deleted-while-reset")

        def delta(request):
            if request.url.params.get("$deltatoken") == "evicted":
                return httpx.Response(
                    410,
                    json={
                        "error": {
                            "code": "SyncStateNotFound",
                            "message": "The sync state generation is not found. The delta token is expired.",
                        }
                    },
                )
            return httpx.Response(
                200,
                json={
                    "value": [{"id": "AAMk-new", "subject": "New", "receivedDateTime": "2026-12-01T10:00:00Z"}],
                    "@odata.deltaLink": f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=fresh",
                },
            )

        respx_mock.get("/me/mailFolders/inbox/messages/delta").mock(side_effect=delta)
        mailbox_sync(connection_id=conn.pk)  # raised PermanentError (HTTP 410) on every push, forever
        mailbox.refresh_from_db()
        assert mailbox.delta_link.endswith("$deltatoken=fresh")
        assert set(MailMessage.objects.values_list("external_id", flat=True)) == {"AAMk-new"}


class TestGmailCacheHidesSpamAndTrash:
    def test_mail_trashed_or_spammed_elsewhere_leaves_the_cached_list_as_gmail_would_list_it(
        self, gmail, user, user_client
    ):
        """Gmail's messages.list leaves SPAM and TRASH out (includeSpamTrash=false), but history sync upserted
        every changed message into the cache, and the fresh cache is what the list answers: a message the user
        trashed in Gmail, and incoming spam, showed up in the hub's message list."""
        from datetime import timedelta

        from django.utils import timezone

        from messaging.mail.models import Mailbox
        from messaging.mail.services import mailbox_sync

        from .fake_gmail import make_message

        keep, trashed = make_message(1), make_message(2)
        gmail.add(keep)
        gmail.add(trashed)
        conn = google_conn(user)
        now = timezone.now()
        Mailbox.objects.create(connection=conn, watch_expires_at=now + timedelta(days=6))
        mailbox_sync(connection_id=conn.pk)  # first sync: full, both in the inbox
        assert user_client.get(url(conn, "messages/")).json()["source"] == "cache"

        # In Gmail's own UI: m00002 moved to the trash; a spam message arrives.
        trashed["labelIds"] = ["TRASH"]
        spam = make_message(3, labels=("SPAM", "UNREAD"))
        gmail.add(spam)
        gmail.history = [
            (5001, {"id": "5001", "labelsAdded": [{"message": {"id": trashed["id"]}, "labelIds": ["TRASH"]}]}),
            (5002, {"id": "5002", "messagesAdded": [{"message": {"id": spam["id"]}}]}),
        ]
        gmail.history_id = 5002
        mailbox_sync(connection_id=conn.pk)  # a push: incremental, from the stored historyId

        listed = user_client.get(url(conn, "messages/")).json()
        assert listed["source"] == "cache"
        assert [m["id"] for m in listed["messages"]] == [keep["id"]]


def test_archiving_a_gmail_message_read_leaves_the_cached_inbox_without_it(gmail, user, user_client):
    """Read and archived, a message has no label left: Gmail's answer has no labelIds, and the cache kept
    INBOX and UNREAD, so the fresh cached inbox listed it, unread, until the next push."""
    from datetime import timedelta

    from django.utils import timezone

    from messaging.mail.models import Mailbox
    from messaging.mail.services import mailbox_sync

    from .fake_gmail import make_message

    gmail.add(make_message(1))
    gmail.add(make_message(2))
    conn = google_conn(user)
    Mailbox.objects.create(connection=conn, watch_expires_at=timezone.now() + timedelta(days=6))
    mailbox_sync(connection_id=conn.pk)
    response = user_client.post(url(conn, "messages/m00002/modify/"), {"read": True, "archive": True}, format="json")
    assert response.status_code == 200 and response.json()["labels"] == []

    listed = user_client.get(url(conn, "messages/"), {"label": "INBOX"}).json()
    assert listed["source"] == "cache"
    assert [m["id"] for m in listed["messages"]] == ["m00001"]
    [archived] = [m for m in user_client.get(url(conn, "messages/")).json()["messages"] if m["id"] == "m00002"]
    assert archived["labels"] == [] and archived["unread"] is False


@pytest.mark.respx(base_url="https://graph.microsoft.test/v1.0", assert_all_called=False)
def test_marking_an_outlook_message_unread_and_flagged_keeps_the_cached_list_right(
    respx_mock, graph_settings, user, user_client
):
    """message_modify wrote the cache's unread/starred as "UNREAD"/"STARRED" in result.labels, which is how Gmail
    says it; Outlook's labels are folder ids, so every Outlook modify cached the message as read and unflagged, and
    the (fresh) cached list showed that, whatever Graph answered."""
    from datetime import timedelta

    import httpx
    from django.utils import timezone

    from messaging.mail.models import Mailbox, MailMessage

    from .conftest import ms_conn
    from .test_outlook import graph_message

    conn = ms_conn(user)
    now = timezone.now()
    mailbox = Mailbox.objects.create(
        connection=conn,
        subscription_id="sub-1",
        subscription_expires_at=now + timedelta(days=2),
        last_synced_at=now,
        inbox_folder_id="inbox-id",
    )
    MailMessage.objects.create(mailbox=mailbox, external_id="AAMk0001", labels=["inbox-id"], unread=False)
    respx_mock.patch("/me/messages/AAMk0001").mock(
        return_value=httpx.Response(200, json=graph_message(1, isRead=False, flag={"flagStatus": "flagged"}))
    )
    response = user_client.post(url(conn, "messages/AAMk0001/modify/"), {"read": False, "starred": True}, format="json")
    assert response.status_code == 200, response.content

    listed = user_client.get(url(conn, "messages/"), {"label": "inbox"}).json()
    assert listed["source"] == "cache"
    [message] = listed["messages"]
    assert (message["unread"], message["starred"]) == (True, True)


@pytest.mark.respx(base_url="https://graph.microsoft.test/v1.0", assert_all_called=False)
def test_an_outlook_folder_other_than_the_inbox_is_listed_from_graph_while_push_keeps_the_inbox(
    respx_mock, graph_settings, user, user_client
):
    """Outlook's push (subscription and delta) follows the inbox alone, yet the fresh cache answered every
    `label`: Sent Items, listed while push was on, came back empty."""
    from datetime import timedelta

    import httpx
    from django.utils import timezone

    from messaging.mail.models import Mailbox
    from messaging.mail.tasks import mail_sync

    from .conftest import GRAPH, ms_conn
    from .test_outlook import graph_message

    conn = ms_conn(user)
    Mailbox.objects.create(
        connection=conn, subscription_id="sub-1", subscription_expires_at=timezone.now() + timedelta(days=2)
    )
    respx_mock.get("/me/mailFolders/inbox/messages/delta").mock(
        return_value=httpx.Response(
            200,
            json={
                "value": [graph_message(1)],
                "@odata.deltaLink": f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=1",
            },
        )
    )
    mail_sync(conn.pk)
    inbox = user_client.get(url(conn, "messages/"), {"label": "inbox"}).json()
    assert inbox["source"] == "cache" and [m["id"] for m in inbox["messages"]] == ["AAMk0001"]

    sent_folder = respx_mock.get("/me/mailFolders/sent-id/messages").mock(
        return_value=httpx.Response(200, json={"value": [graph_message(9, parentFolderId="sent-id")]})
    )
    sent = user_client.get(url(conn, "messages/"), {"label": "sent-id"})
    assert sent.status_code == 200, sent.content
    assert [m["id"] for m in sent.json()["messages"]] == ["AAMk0009"]
    assert sent.json()["source"] == "provider" and sent_folder.called
