"""A mail send retried after a timeout reaches the recipient once: Gmail and Outlook, through the API.

Neither Gmail's messages.send nor Graph's send takes an idempotency key. When
the provider kept the message but its answer never arrived, the client gets a
504, and its retry with the same Idempotency-Key used to send the message a
second time. Every attempt of one key now carries the same Message-ID, and a
retry after an attempt whose outcome is unknown looks that Message-ID up in
Sent first (through the gateway: a ProviderCall of its own). The providers
are the HTTP-level fakes: Gmail a local server, Graph respx.
"""

import httpx
import pytest

from integrations.models import ProviderCall
from messaging.mail.models import MailSend

from .conftest import GMAIL, google_conn, ms_conn
from .fake_graph import FakeGraphMail

pytestmark = pytest.mark.django_db

BODY = {"to": ["bob@example.com"], "subject": "Invoice", "text": "Attached."}


def send(client, conn, key, body=BODY):
    return client.post(f"/api/v1/mail/{conn.pk}/messages/send/", body, format="json", headers={"Idempotency-Key": key})


class TestGmail:
    def test_a_send_that_timed_out_after_gmail_kept_it_is_not_sent_again(self, short_gmail_timeout, user, user_client):
        gmail, conn = short_gmail_timeout, google_conn(user)
        gmail.send_faults = ["accept_then_hang"]
        first = send(user_client, conn, "order-17")
        assert first.status_code == 504 and first.json()["error"] == "provider_timeout"
        assert len(gmail.sent) == 1  # Gmail has it; the hub cannot know

        retry = send(user_client, conn, "order-17")
        assert retry.status_code == 202, retry.content
        assert len(gmail.sent) == 1 and len(gmail.send_attempts) == 1  # the recipient gets it once
        [kept] = gmail.sent_messages.values()
        assert retry.json() == {"id": kept["id"], "thread_id": kept["threadId"], "message_id": gmail.send_attempts[0]}
        lookup = ProviderCall.objects.get(provider="gmail", operation="messages.sent_lookup")
        assert lookup.outcome == "ok" and lookup.units["quota_units"] == 5
        # Answered from the key's record from now on: nothing more reaches Gmail.
        requests = len(gmail.requests)
        assert send(user_client, conn, "order-17").json() == retry.json()
        assert len(gmail.requests) == requests

    def test_a_dropped_connection_after_gmail_kept_it_is_not_sent_again(self, gmail, user, user_client):
        conn = google_conn(user)
        gmail.send_faults = ["accept_then_drop"]
        first = send(user_client, conn, "order-18")
        assert first.status_code in (502, 503, 504)
        retry = send(user_client, conn, "order-18")
        assert retry.status_code == 202, retry.content
        assert len(gmail.sent) == 1 and retry.json()["id"] == "sent1"

    def test_a_send_that_really_failed_is_sent_once_on_retry_with_the_same_message_id(
        self, short_gmail_timeout, user, user_client
    ):
        gmail, conn = short_gmail_timeout, google_conn(user)
        gmail.send_faults = ["hang"]  # timed out, and Gmail kept nothing
        assert send(user_client, conn, "order-19").status_code == 504
        assert gmail.sent == []

        retry = send(user_client, conn, "order-19")
        assert retry.status_code == 202, retry.content
        assert len(gmail.sent) == 1
        first_id, second_id = gmail.send_attempts
        assert first_id == second_id == retry.json()["message_id"]
        assert first_id.startswith("<") and first_id.endswith("@hub.local>")
        assert ProviderCall.objects.filter(operation="messages.sent_lookup").count() == 1
        row = MailSend.objects.get(connection=conn)
        assert row.external_id == retry.json()["id"] and row.send_doubt == "" and row.sent_at is not None

    def test_a_clean_refusal_is_not_looked_up_before_the_next_attempt(self, gmail, user, user_client):
        conn = google_conn(user)
        gmail.rate, gmail.burst = 0.0, 0.0  # Gmail answers 429 rateLimitExceeded: nothing was sent
        assert send(user_client, conn, "order-20").status_code == 503
        assert MailSend.objects.get(connection=conn).send_doubt == "" and gmail.sent == []
        gmail.rate = None
        assert send(user_client, conn, "order-20").status_code == 202
        assert not ProviderCall.objects.filter(operation="messages.sent_lookup").exists()

    def test_a_retry_with_another_message_under_the_same_key_is_a_422(self, short_gmail_timeout, user, user_client):
        gmail, conn = short_gmail_timeout, google_conn(user)
        gmail.send_faults = ["accept_then_hang"]
        assert send(user_client, conn, "order-22").status_code == 504  # the API forgot the key: a 5xx
        other = send(user_client, conn, "order-22", {**BODY, "text": "Something else."})
        assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
        assert len(gmail.sent) == 1 and len(gmail.requests) == 1

    def test_different_keys_are_different_messages(self, gmail, user, user_client):
        conn = google_conn(user)
        first, second = send(user_client, conn, "a").json(), send(user_client, conn, "b").json()
        assert first["message_id"] != second["message_id"] and len(gmail.sent) == 2

    def test_a_connection_that_cannot_read_sent_mail_does_not_send_blind(self, short_gmail_timeout, user, user_client):
        gmail, conn = short_gmail_timeout, google_conn(user, scopes=[f"{GMAIL}send"])
        gmail.send_faults = ["accept_then_hang"]
        assert send(user_client, conn, "order-21").status_code == 504
        retry = send(user_client, conn, "order-21")
        assert retry.status_code == 409 and retry.json()["error"] == "send_outcome_unknown"
        assert len(gmail.sent) == 1


@pytest.mark.respx(base_url="https://graph.microsoft.test/v1.0", assert_all_called=False)
class TestGraph:
    def test_a_draft_send_that_timed_out_after_graph_kept_it_is_not_sent_again(
        self, respx_mock, graph_settings, user, user_client
    ):
        graph, conn = FakeGraphMail(respx_mock), ms_conn(user)
        graph.send_faults = ["accept_then_timeout"]
        first = send(user_client, conn, "order-30")
        assert first.status_code == 504 and first.json()["error"] == "provider_timeout"
        assert len(graph.sent) == 1

        retry = send(user_client, conn, "order-30")
        assert retry.status_code == 202, retry.content
        [message_id] = graph.send_attempts
        assert graph.delivered(message_id) == 1  # the recipient gets it once
        [kept] = graph.sent_items.values()
        assert retry.json() == {"id": kept["id"], "thread_id": kept["conversationId"], "message_id": message_id}
        # Asked of the draft it went out through (test_graph_send_via_stored_draft), not of Sent Items.
        assert graph.lookups == []
        assert ProviderCall.objects.get(provider="outlook", operation="drafts.sent_check").outcome == "ok"

    def test_send_mail_that_timed_out_after_graph_kept_it_is_not_sent_again(
        self, respx_mock, graph_settings, user, user_client
    ):
        graph, conn = FakeGraphMail(respx_mock), ms_conn(user, scopes=("Mail.Send", "Mail.Read", "User.Read"))
        graph.send_faults = ["accept_then_timeout"]
        assert send(user_client, conn, "order-31").status_code == 504
        retry = send(user_client, conn, "order-31")
        assert retry.status_code == 202, retry.content
        assert len(graph.sent) == 1 and len(graph.send_attempts) == 1
        assert retry.json()["id"] == next(iter(graph.sent_items))

    def test_a_send_that_really_failed_is_sent_once_on_retry_with_the_same_message_id(
        self, respx_mock, graph_settings, user, user_client
    ):
        graph, conn = FakeGraphMail(respx_mock), ms_conn(user)
        graph.send_faults = ["timeout"]
        assert send(user_client, conn, "order-32").status_code == 504
        assert graph.sent == []

        retry = send(user_client, conn, "order-32")
        assert retry.status_code == 202, retry.content
        first_id, second_id = graph.send_attempts
        assert first_id == second_id == retry.json()["message_id"]
        assert graph.delivered(first_id) == 1 and len(graph.created) == 1  # its draft, sent on retry

    def test_a_lookup_that_fails_sends_nothing_and_the_next_retry_looks_again(
        self, respx_mock, graph_settings, user, user_client
    ):
        # sendMail: a draft's send asks its draft instead (test_graph_send_via_stored_draft).
        graph, conn = FakeGraphMail(respx_mock), ms_conn(user, scopes=("Mail.Send", "Mail.Read", "User.Read"))
        graph.send_faults = ["accept_then_timeout"]
        assert send(user_client, conn, "order-33").status_code == 504
        lookup = respx_mock.get("/me/mailFolders/sentitems/messages")
        lookup.side_effect = [httpx.Response(503, json={"error": {"code": "ServiceUnavailable", "message": "busy"}})]
        failed = send(user_client, conn, "order-33")
        assert failed.status_code == 502 and failed.json()["error"] == "provider_unavailable"
        assert len(graph.send_attempts) == 1
        lookup.side_effect = graph._sent_items
        assert send(user_client, conn, "order-33").status_code == 202
        assert len(graph.sent) == 1 and len(graph.send_attempts) == 1
