"""One mailbox, two runs at once: a push's sync beside a `POST sync/`, or two `POST sync/`, on real PostgreSQL and Redis.

Each run reads the mailbox's cursor (delta link, historyId) and subscription, calls the provider, then writes what it
read; two at once each wrote over the other."""

import itertools
import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.db import connections
from django.utils import timezone

from messaging.mail.models import Mailbox, MailMessage
from messaging.mail.tasks import mail_sync

from .conftest import GRAPH, graph_expiry, ms_conn
from .test_outlook import graph_message

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.respx(base_url=GRAPH, assert_all_called=False),
]

DELTA = "/me/mailFolders/inbox/messages/delta"
HOOK = "https://hub.example.com/webhooks/outlook/"


def delta_link(version):
    return f"{GRAPH}{DELTA}?$deltatoken={version}"


def in_thread(target, errors):
    def run():
        try:
            target()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_push_sync_and_a_sync_request_at_once_keep_the_newer_state_and_delta_link(
    respx_mock, graph_settings, user, user_client
):
    """A push's sync read the inbox delta (the message read), then a `POST sync/` read it again (the message marked
    unread since) and stored its answer first; the push's older answer was stored over it: the cache said read and
    the delta link went back to the older one, until another notification came."""
    conn = ms_conn(user)
    now = timezone.now()
    mailbox = Mailbox.objects.create(
        connection=conn,
        subscription_id="sub-1",
        client_state="s3cret-state",
        subscription_expires_at=now + timedelta(days=2),
        delta_link=delta_link(1),
        last_synced_at=now,
    )
    MailMessage.objects.create(mailbox=mailbox, external_id="AAMk0001", labels=["inbox-id"], unread=True)
    # In Outlook: version 2, the message is read.
    outlook = {"version": 2, "changed_at": 2, "unread": False}
    first_read, release_first = threading.Event(), threading.Event()

    def delta(request):
        since = int(request.url.params["$deltatoken"])
        changed = [graph_message(1, isRead=not outlook["unread"])] if outlook["changed_at"] > since else []
        answer = {"value": changed, "@odata.deltaLink": delta_link(outlook["version"])}
        if not first_read.is_set():
            first_read.set()
            release_first.wait(10)  # the push's answer is on its way back while the other run goes
        return httpx.Response(200, json=answer)

    respx_mock.get(DELTA).mock(side_effect=delta)
    respx_mock.patch("/subscriptions/sub-1").mock(
        return_value=httpx.Response(200, json={"id": "sub-1", "expirationDateTime": graph_expiry()})
    )
    errors, answers = [], []
    push = in_thread(lambda: mail_sync(conn.pk), errors)
    assert first_read.wait(10)
    outlook.update(version=3, changed_at=3, unread=True)  # in Outlook: marked unread again
    request = in_thread(lambda: answers.append(user_client.post(f"/api/v1/mail/{conn.pk}/sync/")), errors)
    request.join(2)
    release_first.set()
    push.join(20)
    request.join(20)

    assert errors == [] and [a.status_code for a in answers] == [200]
    mailbox.refresh_from_db()
    assert mailbox.delta_link == delta_link(3)
    assert MailMessage.objects.get(external_id="AAMk0001").unread is True
    listed = user_client.get(f"/api/v1/mail/{conn.pk}/messages/", {"label": "inbox"}).json()
    assert listed["source"] == "cache" and [m["unread"] for m in listed["messages"]] == [True]


def test_two_sync_requests_at_once_create_one_graph_subscription(respx_mock, graph_settings, user, client_for):
    """Both requests found the mailbox without a subscription and each created one: the mailbox kept the second,
    and the first, never deleted, sent Graph's notifications to a hub that refused them until it lapsed."""
    conn = ms_conn(user)
    created = []

    def subscribe(request):
        threading.Event().wait(0.5)  # Graph takes its time to validate the notification URL
        created.append(f"sub-{len(created) + 1}")
        return httpx.Response(201, json={"id": created[-1], "expirationDateTime": "2026-12-04T10:00:00Z"})

    respx_mock.post("/subscriptions").mock(side_effect=subscribe)
    respx_mock.get("/subscriptions").mock(
        side_effect=lambda request: httpx.Response(200, json={"value": [{"id": i} for i in created]})
    )
    renew = respx_mock.patch(url__regex=r".*/subscriptions/[^/]+$").mock(
        return_value=httpx.Response(200, json={"expirationDateTime": "2026-12-04T10:00:00Z"})
    )
    respx_mock.get(DELTA).mock(return_value=httpx.Response(200, json={"value": [], "@odata.deltaLink": delta_link(1)}))
    clients = [client_for(user), client_for(user)]
    barrier, errors, answers = threading.Barrier(2), [], []

    def sync(client):
        barrier.wait(5)
        answers.append(client.post(f"/api/v1/mail/{conn.pk}/sync/"))

    threads = [in_thread(lambda c=c: sync(c), errors) for c in clients]
    for thread in threads:
        thread.join(30)

    assert errors == [] and [a.status_code for a in answers] == [200, 200]
    assert created == ["sub-1"]  # one subscription; the other request renewed it
    assert renew.call_count == 1 and renew.calls[0].request.url.path.endswith("/subscriptions/sub-1")
    assert Mailbox.objects.get(connection=conn).subscription_id == "sub-1"


def test_two_connections_to_one_outlook_account_subscribing_at_once_keep_both_subscriptions(
    respx_mock, graph_settings, user, other_user, client_for
):
    """Two hub users' connections to one Outlook account both subscribe the inbox, and Graph lists each one's
    subscription to the other (one user, one app). The second's cleanup ran while the first's create was in flight:
    it found the first's subscription made and not yet recorded, and deleted it; the first mailbox then recorded a
    subscription Graph no longer had, and got no push until its renewal found it gone."""
    first, second = ms_conn(user), ms_conn(other_user)
    made, created, listed_meanwhile = {}, threading.Event(), threading.Event()
    ids = itertools.count(1)

    def subscribe(request):
        sub_id = f"sub-{next(ids)}"
        made[sub_id] = {"id": sub_id, "notificationUrl": HOOK, "resource": "me/mailFolders('inbox')/messages"}
        created.set()
        # Graph has made it; its answer is still on the way while the other run reaches its mailbox's watch (its
        # mailbox row made) and lists, or waits: with the account's lock it waits for this create to be recorded.
        deadline = time.monotonic() + 10
        while not Mailbox.objects.filter(connection=second).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        listed_meanwhile.wait(1)
        return httpx.Response(201, json={"id": sub_id, "expirationDateTime": graph_expiry()})

    def subscriptions(request):
        if created.is_set():
            listed_meanwhile.set()
        return httpx.Response(200, json={"value": list(made.values())})

    def delete(request):
        made.pop(request.url.path.rsplit("/", 1)[1], None)
        return httpx.Response(204)

    respx_mock.post("/subscriptions").mock(side_effect=subscribe)
    respx_mock.get("/subscriptions").mock(side_effect=subscriptions)
    respx_mock.delete(url__regex=r".*/subscriptions/[^/]+$").mock(side_effect=delete)
    respx_mock.get(DELTA).mock(return_value=httpx.Response(200, json={"value": [], "@odata.deltaLink": delta_link(1)}))
    errors, answers = [], []
    threads = [in_thread(lambda: answers.append(client_for(user).post(f"/api/v1/mail/{first.pk}/sync/")), errors)]
    assert created.wait(10)
    threads.append(
        in_thread(lambda: answers.append(client_for(other_user).post(f"/api/v1/mail/{second.pk}/sync/")), errors)
    )
    for thread in threads:
        thread.join(30)

    assert errors == [] and [a.status_code for a in answers] == [200, 200]
    recorded = [Mailbox.objects.get(connection=c).subscription_id for c in (first, second)]
    assert sorted(made) == sorted(recorded) == ["sub-1", "sub-2"]
