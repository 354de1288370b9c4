"""A thread leaves out the messages in the bin and spam, as the list without `label` does.

Neither provider's conversation read leaves them out (Gmail's threads.get has no includeSpamTrash; Graph's
GET /me/messages?$filter=conversationId eq '...' reads every folder), so a message a user had deleted or marked as
junk, gone from the list, came back when its thread was opened. Gmail goes through google-api-python-client
against the fake Gmail server; Outlook through Graph's HTTP, intercepted.
"""

import pytest

from messaging.mail.models import Mailbox

from .conftest import GRAPH, google_conn, make_message, ms_conn
from .test_outlook_list_leaves_out_deleted_and_junk import FOLDERS, FakeGraphFolders

pytestmark = pytest.mark.django_db


def thread(client, conn, thread_id, **params):
    return client.get(f"/api/v1/mail/{conn.pk}/threads/{thread_id}/", params)


def ids(response):
    assert response.status_code == 200, response.content
    return [m["id"] for m in response.json()["messages"]]


def test_a_gmail_thread_leaves_out_its_messages_in_trash_and_spam(gmail, user, user_client):
    gmail.add(make_message(1, thread="tx", labels=("INBOX",)))
    gmail.add(make_message(2, thread="tx", labels=("TRASH",)))
    gmail.add(make_message(3, thread="tx", labels=("SPAM", "UNREAD")))
    gmail.add(make_message(4, thread="tx", labels=("SENT",)))
    gmail.add(make_message(5, thread="ty", labels=("TRASH",)))
    conn = google_conn(user)
    assert ids(thread(user_client, conn, "tx")) == ["m00001", "m00004"]
    assert ids(thread(user_client, conn, "tx", include_spam_trash="true")) == ["m00001", "m00002", "m00003", "m00004"]
    # A thread wholly in the bin is not found, as the list would not show it, but asked for it is there.
    gone = thread(user_client, conn, "ty")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    assert "include_spam_trash" in gone.json()["detail"]
    assert ids(thread(user_client, conn, "ty", include_spam_trash="true")) == ["m00005"]


@pytest.mark.respx(base_url=GRAPH, assert_all_called=False)
def test_an_outlook_thread_leaves_out_its_messages_in_deleted_items_and_junk_email(
    respx_mock, graph_settings, user, user_client
):
    graph = FakeGraphFolders(respx_mock)
    graph.add(1, "inbox", day=1, conversation="conv-a")
    graph.add(2, "deleteditems", day=2, conversation="conv-a")
    graph.add(3, "junkemail", day=3, conversation="conv-a")
    graph.add(4, "archive", day=4, conversation="conv-a")
    graph.add(5, "deleteditems", day=5, conversation="conv-b")
    conn = ms_conn(user)
    assert ids(thread(user_client, conn, "conv-a")) == ["AAMk0001", "AAMk0004"]
    every = ["AAMk0001", "AAMk0002", "AAMk0003", "AAMk0004"]
    assert ids(thread(user_client, conn, "conv-a", include_spam_trash="true")) == every
    gone = thread(user_client, conn, "conv-b")
    assert gone.status_code == 404 and "include_spam_trash" in gone.json()["detail"]
    assert ids(thread(user_client, conn, "conv-b", include_spam_trash="true")) == ["AAMk0005"]
    # The folders' ids were asked of Graph once, and are the ones the list leaves out.
    assert graph.folder_reads == ["deleteditems", "junkemail"]
    assert Mailbox.objects.get(connection=conn).left_out_folder_ids == [FOLDERS["deleteditems"], FOLDERS["junkemail"]]


def test_include_spam_trash_must_be_a_boolean(gmail, user, user_client):
    gmail.add(make_message(1, thread="tx"))
    response = thread(user_client, google_conn(user), "tx", include_spam_trash="sometimes")
    assert response.status_code == 400 and "include_spam_trash" in response.content.decode()
