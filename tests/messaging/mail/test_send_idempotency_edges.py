"""Mail send under an Idempotency-Key: edges of the retry record (MailSend), through the API and admin.

A 5xx (a timeout) leaves the API no record of the key, so the MailSend row alone tells a retry of the same
message from another message under the same key. Two files with the same name, type and size but other bytes
are other messages: the retry must not be answered with the first attempt's send. A token refresh that fails
sent nothing, so it does not make the send "maybe sent". Admin shows the record but never adds or edits one.
"""

import base64

import pytest

from .conftest import GMAIL, google_conn

pytestmark = pytest.mark.django_db


def send(client, conn, key, content):
    body = {
        "to": ["bob@example.com"],
        "subject": "Invoice",
        "text": "Attached.",
        "attachments": [
            {
                "filename": "invoice.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(content).decode(),
            }
        ],
    }
    return client.post(f"/api/v1/mail/{conn.pk}/messages/send/", body, format="json", headers={"Idempotency-Key": key})


def test_a_retry_with_other_attachment_bytes_under_the_same_key_is_a_422(short_gmail_timeout, user, user_client):
    gmail, conn = short_gmail_timeout, google_conn(user)
    gmail.send_faults = ["accept_then_hang"]
    assert send(user_client, conn, "order-40", b"invoice v1").status_code == 504  # the API forgot the key

    other = send(user_client, conn, "order-40", b"invoice v2")  # same name, type and size
    assert other.status_code == 422, other.content
    assert other.json()["error"] == "idempotency_key_reused"
    assert len(gmail.sent) == 1


@pytest.mark.redis  # holds the refresh lock, which lives in Redis
def test_a_send_that_never_left_for_a_token_refresh_is_sent_on_retry(monkeypatch, gmail, user, user_client):
    """The token refresh is busy elsewhere, so the first attempt never reached Gmail: nothing to doubt, and a
    connection that cannot read Sent is not told the outcome is unknown."""
    from datetime import timedelta

    from django.utils import timezone

    from integrations.models import Connection
    from integrations.oauth.services import refresh
    from integrations.redis import get_client, key

    conn = google_conn(user, scopes=[f"{GMAIL}send"])
    Connection.objects.filter(pk=conn.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    monkeypatch.setattr(refresh, "LOCK_WAIT_SECONDS", 0.2)
    held = get_client().lock(key("oauth-refresh", conn.pk), timeout=30)
    assert held.acquire()
    try:
        first = send(user_client, conn, "order-41", b"invoice")
    finally:
        held.release()
    assert first.status_code == 502 and first.json()["provider"] == "oauth", first.content
    assert gmail.requests == []

    # The worker that held the lock refreshed the token meanwhile.
    Connection.objects.filter(pk=conn.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    retry = send(user_client, conn, "order-41", b"invoice")
    assert retry.status_code == 202, retry.content
    assert len(gmail.sent) == 1


def test_staff_can_view_a_send_record_but_not_add_or_edit_it(admin_client, user):
    """The row is what keeps a retry from sending twice: admin shows it, and refuses to make or change one."""
    from django.urls import reverse

    from messaging.mail.models import MailSend

    row = MailSend.objects.create(
        connection=google_conn(user), key_digest="a" * 64, content_digest="b" * 64, message_id="<1.2.x@hub.local>"
    )
    change = reverse("admin:mail_mailsend_change", args=[row.pk])
    assert admin_client.get(change).status_code == 200
    assert admin_client.get(reverse("admin:mail_mailsend_add")).status_code == 403
    posted = admin_client.post(change, {"connection": row.connection_id, "send_doubt": "ambiguous"})
    assert posted.status_code == 403
    row.refresh_from_db()
    assert row.send_doubt == MailSend.SendDoubt.NONE
