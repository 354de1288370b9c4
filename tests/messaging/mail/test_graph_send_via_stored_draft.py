"""An Outlook send retried after an unknown outcome asks its stored draft, so it goes out once even while Sent Items lags.

On Outlook with Mail.ReadWrite the hub sends through a draft, and stores the
draft's id on the MailSend row before sending it. Graph puts the sent copy in
Sent Items a moment after its 202 (under the draft's immutable id), so a retry
that looked only in Sent Items could miss it and send again. The retry asks
the draft instead: still a draft, it was not sent and is sent now (the same
draft, none left behind); gone or no longer a draft, it was sent. Through the
API, against the respx fake of Graph.
"""

import httpx
import pytest

from integrations.models import ProviderCall
from messaging.mail.models import MailSend

from .conftest import ms_conn
from .fake_graph import FakeGraphMail

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.respx(base_url="https://graph.microsoft.test/v1.0", assert_all_called=False),
]

BODY = {"to": ["bob@example.com"], "subject": "Invoice", "text": "Attached."}


def send(client, conn, key):
    return client.post(f"/api/v1/mail/{conn.pk}/messages/send/", BODY, format="json", headers={"Idempotency-Key": key})


@pytest.fixture
def graph(respx_mock, graph_settings):
    graph = FakeGraphMail(respx_mock)
    graph.sent_copy_lag = 30.0  # the retries below come well within it
    return graph


def test_a_send_graph_accepted_is_not_sent_again_by_a_retry_before_sent_items_shows_it(graph, user, user_client):
    conn = ms_conn(user)
    graph.send_faults = ["accept_then_timeout"]
    assert send(user_client, conn, "order-40").status_code == 504
    [draft_id] = graph.created
    assert MailSend.objects.get(connection=conn).draft_id == draft_id  # stored before the send

    retry = send(user_client, conn, "order-40")
    assert retry.status_code == 202, retry.content
    [message_id] = graph.send_attempts
    assert graph.delivered(message_id) == 1 and graph.created == [draft_id]
    # The answer a send that heard Graph's 202 gives: the draft's immutable id, its conversation, its Message-ID.
    assert retry.json() == {"id": draft_id, "thread_id": "AAQkAGI2conv0001=", "message_id": message_id}
    assert graph.lookups == []  # Sent Items would not have shown it yet
    assert ProviderCall.objects.get(operation="drafts.sent_check").http_status == 404

    graph.advance(30)
    assert list(graph.sent_items) == [draft_id]  # the answer names the copy in Sent Items
    requests = ProviderCall.objects.count()
    assert send(user_client, conn, "order-40").json() == retry.json()
    assert ProviderCall.objects.count() == requests  # answered from the key's record


def test_a_send_that_timed_out_before_graph_accepted_it_is_sent_once_through_the_same_draft(graph, user, user_client):
    conn = ms_conn(user)
    graph.send_faults = ["timeout"]
    assert send(user_client, conn, "order-41").status_code == 504
    assert graph.sent == [] and len(graph.drafts) == 1

    retry = send(user_client, conn, "order-41")
    assert retry.status_code == 202, retry.content
    [draft_id] = graph.created  # no second draft made
    assert graph.drafts == {}  # and none left behind
    first, second = graph.send_attempts
    assert first == second == retry.json()["message_id"] and graph.delivered(first) == 1
    assert retry.json()["id"] == draft_id
    row = MailSend.objects.get(connection=conn)
    assert row.external_id == draft_id and row.send_doubt == "" and row.sent_at is not None


def test_a_send_graph_refused_is_retried_through_the_same_draft_without_asking_sent_items(graph, user, user_client):
    conn = ms_conn(user)
    graph.send_faults = ["refuse"]
    assert send(user_client, conn, "order-42").status_code == 502  # Graph's 400, passed on
    assert MailSend.objects.get(connection=conn).send_doubt == ""

    assert send(user_client, conn, "order-42").status_code == 202
    assert len(graph.created) == 1 and graph.drafts == {} and len(graph.sent) == 1
    assert graph.lookups == []


def test_a_draft_the_owner_deleted_before_any_send_reached_graph_is_made_again(graph, user, user_client):
    conn = ms_conn(user)
    graph.send_faults = ["refuse"]
    assert send(user_client, conn, "order-43").status_code == 502
    graph.drafts.clear()  # deleted in Outlook before the client retried

    retry = send(user_client, conn, "order-43")
    assert retry.status_code == 202, retry.content
    assert len(graph.created) == 2 and len(graph.sent) == 1
    assert retry.json()["id"] == graph.created[1] == MailSend.objects.get(connection=conn).draft_id


def test_a_send_whose_copy_already_landed_is_answered_from_it(graph, user, user_client):
    conn = ms_conn(user)
    graph.sent_copy_lag = 0.0
    graph.send_faults = ["accept_then_timeout"]
    assert send(user_client, conn, "order-44").status_code == 504
    retry = send(user_client, conn, "order-44")
    assert retry.status_code == 202, retry.content
    [kept] = graph.sent_items.values()
    assert retry.json()["id"] == kept["id"] and len(graph.sent) == 1 and len(graph.send_attempts) == 1


def test_a_draft_check_that_fails_sends_nothing_and_the_next_retry_asks_again(graph, respx_mock, user, user_client):
    conn = ms_conn(user)
    graph.send_faults = ["timeout"]
    assert send(user_client, conn, "order-45").status_code == 504
    check = respx_mock.get(url__regex=r".*/me/messages/(?P<mid>[^/?]+)(\?.*)?$")
    check.side_effect = [httpx.Response(503, json={"error": {"code": "ServiceUnavailable", "message": "busy"}})]
    failed = send(user_client, conn, "order-45")
    assert failed.status_code == 502 and failed.json()["error"] == "provider_unavailable"
    assert len(graph.send_attempts) == 1

    check.side_effect = graph._get
    assert send(user_client, conn, "order-45").status_code == 202
    assert len(graph.created) == 1 and len(graph.sent) == 1 and len(graph.send_attempts) == 2
