"""Mail list by label from the fresh cache answers on every database: SQLite has no JSON `contains` lookup.

`?label=` on a fresh mailbox filtered the cached rows with `labels__contains=[label]`, which Django refuses on
SQLite (what `make run` uses), so the list answered 500 there. The first test runs on whatever database is
configured; the second forces the no-`contains` branch, so CI on PostgreSQL covers it too.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.fields.json import DataContains
from django.utils import timezone

from messaging.mail.models import Mailbox, MailMessage

from .conftest import google_conn

pytestmark = pytest.mark.django_db


def fresh_mailbox(conn):
    now = timezone.now()
    return Mailbox.objects.create(
        connection=conn, history_id="100", watch_expires_at=now + timedelta(days=2), last_synced_at=now
    )


def cached(mailbox, external_id, labels, minutes_ago):
    return MailMessage.objects.create(
        mailbox=mailbox,
        external_id=external_id,
        subject=f"subject {external_id}",
        labels=labels,
        sent_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def listed_ids(client, conn, label):
    response = client.get(f"/api/v1/mail/{conn.pk}/messages/", {"label": label})
    assert response.status_code == 200, (response.status_code, response.content[:300])
    body = response.json()
    assert body["source"] == "cache"
    return [m["id"] for m in body["messages"]]


def seed_mailbox(user):
    conn = google_conn(user)
    mailbox = fresh_mailbox(conn)
    # Near misses: another label that contains the name, the name in another case, no labels at all.
    cached(mailbox, "m-inbox", ["INBOX", "UNREAD"], minutes_ago=1)
    cached(mailbox, "m-work-old", ["Label_7"], minutes_ago=30)
    cached(mailbox, "m-longer-name", ["Label_70"], minutes_ago=2)
    cached(mailbox, "m-other-case", ["label_7"], minutes_ago=3)
    cached(mailbox, "m-none", [], minutes_ago=4)
    cached(mailbox, "m-work-new", ["INBOX", "Label_7"], minutes_ago=5)
    # More unlabelled messages than a page holds, all newer than the labelled ones below them.
    for i in range(55):
        cached(mailbox, f"m-bulk-{i}", ["INBOX"], minutes_ago=6 + i / 100)
    cached(mailbox, "m-work-oldest", ["CATEGORY_UPDATES", "Label_7"], minutes_ago=90)
    return conn


def test_listing_by_label_answers_only_that_label_on_the_configured_database(gmail, user, user_client):
    conn = seed_mailbox(user)
    assert listed_ids(user_client, conn, "Label_7") == ["m-work-new", "m-work-old", "m-work-oldest"]
    assert listed_ids(user_client, conn, "UNREAD") == ["m-inbox"]
    assert listed_ids(user_client, conn, "Label_404") == []


@pytest.fixture
def no_json_contains(monkeypatch):
    """Whatever database runs the test behaves as SQLite (and Oracle) do: no `supports_json_field_contains`, and
    the lookup refused as Django refuses it there. PostgreSQL compiles `contains` through `as_postgresql`, which
    skips the feature check that `as_sql` makes, so that check is put back in front of it."""
    monkeypatch.setattr(connection.features, "supports_json_field_contains", False)
    monkeypatch.setattr(DataContains, "as_postgresql", DataContains.as_sql, raising=False)


def test_listing_by_label_on_a_database_without_json_contains(gmail, user, user_client, no_json_contains):
    conn = seed_mailbox(user)
    assert listed_ids(user_client, conn, "Label_7") == ["m-work-new", "m-work-old", "m-work-oldest"]
    assert listed_ids(user_client, conn, "UNREAD") == ["m-inbox"]
    assert listed_ids(user_client, conn, "Label_404") == []
    # A label named asks for spam and trash too, as Gmail's own listing by label does.
    cached(conn.mailbox, "m-spam", ["SPAM"], minutes_ago=0)
    assert listed_ids(user_client, conn, "SPAM") == ["m-spam"]
    assert "m-spam" not in listed_ids(user_client, conn, "")
