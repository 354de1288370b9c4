"""Outlook's sendMail (no Mail.ReadWrite, so no draft): a retry within the Sent copy's lag waits, never sends twice.

Graph answers sendMail with 202 and no id, and files the sent copy in Sent Items a while later. A retry of a send
whose answer was lost used to look in Sent Items at once, find nothing yet, and send the mail a second time.
"""

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from messaging.mail.models import MailSend

from .conftest import ms_conn
from .fake_graph import FakeGraphMail
from .test_send_after_timeout_no_duplicate import send

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.respx(base_url="https://graph.microsoft.test/v1.0", assert_all_called=False),
]

SEND_ONLY = ("Mail.Send", "Mail.Read", "User.Read")


@pytest.fixture
def graph(respx_mock, graph_settings):
    graph_settings.OUTLOOK_SENT_COPY_WAIT_SECONDS = 120
    return FakeGraphMail(respx_mock)


def test_a_retry_before_the_sent_copy_lands_waits_then_finds_it_and_sends_nothing_more(graph, user, user_client):
    conn = ms_conn(user, scopes=SEND_ONLY)
    graph.sent_copy_lag = 30.0
    graph.send_faults = ["accept_then_timeout"]
    assert send(user_client, conn, "order-41").status_code == 504

    early = send(user_client, conn, "order-41")
    assert early.status_code == 503, early.content
    assert early.json()["error"] == "send_outcome_pending" and 0 < int(early["Retry-After"]) <= 120
    assert len(graph.send_attempts) == 1

    graph.advance(30)  # Graph has filed the copy
    retry = send(user_client, conn, "order-41")
    assert retry.status_code == 202, retry.content
    assert len(graph.sent) == 1 and len(graph.send_attempts) == 1
    assert retry.json()["id"] == next(iter(graph.sent_items))


def test_a_send_that_really_failed_is_sent_once_after_the_wait(graph, user, user_client):
    conn = ms_conn(user, scopes=SEND_ONLY)
    graph.send_faults = ["timeout"]  # nothing kept
    assert send(user_client, conn, "order-42").status_code == 504
    assert send(user_client, conn, "order-42").status_code == 503
    assert graph.sent == []

    with time_machine.travel(timezone.now() + dt.timedelta(seconds=121)):
        retry = send(user_client, conn, "order-42")
    assert retry.status_code == 202, retry.content
    first, second = graph.send_attempts
    assert first == second == retry.json()["message_id"] and len(graph.sent) == 1
    assert MailSend.objects.get(connection=conn).sent_at is not None


def test_without_a_wait_configured_the_retry_sends_at_once(graph, settings, user, user_client):
    settings.OUTLOOK_SENT_COPY_WAIT_SECONDS = 0
    conn = ms_conn(user, scopes=SEND_ONLY)
    graph.send_faults = ["timeout"]
    assert send(user_client, conn, "order-43").status_code == 504
    assert send(user_client, conn, "order-43").status_code == 202
    assert len(graph.sent) == 1
