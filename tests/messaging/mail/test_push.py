"""Push: Gmail Pub/Sub deliveries verified by their OIDC token; Graph notifications by handshake and clientState."""

import base64
import json
import time

import httpx
import pytest
import responses
from django.utils import timezone
from google.auth import jwt as google_jwt

from integrations.models import ProviderCall, WebhookEvent
from integrations.webhooks.tasks import webhook_process
from messaging.mail.models import Mailbox, MailMessage

from .conftest import AUDIENCE, CERTS_URL, GRAPH, SERVICE_ACCOUNT, google_conn, graph_expiry, ms_conn
from .fake_gmail import make_message

pytestmark = pytest.mark.django_db


def token(signer, **claims):
    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": SERVICE_ACCOUNT,
        "email_verified": True,
        "sub": "1234",
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return google_jwt.encode(signer, payload).decode()


def delivery(message_id="pubsub-1", history_id=5001, address="ada@example.com"):
    data = base64.b64encode(json.dumps({"emailAddress": address, "historyId": history_id}).encode()).decode()
    return {
        "message": {"data": data, "messageId": message_id, "publishTime": "2026-12-02T10:00:00Z"},
        "subscription": "projects/p/subscriptions/s",
    }


def post_gmail(client, body, bearer):
    return client.post("/webhooks/gmail/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {bearer}")


class TestGmailPush:
    def test_a_signed_push_is_stored_once_and_syncs_from_the_stored_history(
        self, push, keys, gmail, user, client, eager, django_capture_on_commit_callbacks
    ):
        conn = google_conn(user)
        Mailbox.objects.create(connection=conn, history_id="4500", full_sync_at=timezone.now())
        new = make_message(42)
        gmail.add(new)
        gmail.history = [(5001, {"id": "5001", "messagesAdded": [{"message": {"id": new["id"]}}]})]
        gmail.history_id = 5001
        good = token(keys["good"][0])
        response = post_gmail(client, delivery(), good)
        assert response.status_code == 200, response.content
        assert post_gmail(client, delivery(), good).json()["status"] == "duplicate"
        event = WebhookEvent.objects.get(provider="gmail")
        with django_capture_on_commit_callbacks(execute=True):
            webhook_process(event.pk)
        event.refresh_from_db()
        assert event.status == "processed", event.last_error
        assert ("GET", "/gmail/v1/users/me/history") in gmail.requests
        assert MailMessage.objects.get().external_id == "m00042"
        assert Mailbox.objects.get().history_id == "5001"

    @pytest.mark.parametrize("case", ["rogue_key", "wrong_audience", "wrong_account", "expired", "missing", "garbage"])
    def test_a_bad_token_is_403_and_stores_nothing(self, case, push, keys, client):
        signer = keys["rogue" if case == "rogue_key" else "good"][0]
        claims = {
            "wrong_audience": {"aud": "https://other.example/push"},
            "wrong_account": {"email": "someone@evil.iam.gserviceaccount.com"},
            "expired": {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
        }.get(case, {})
        bearer = (
            {"missing": "", "garbage": "not.a.jwt"}.get(case)
            if case in ("missing", "garbage")
            else token(signer, **claims)
        )
        if case == "missing":
            response = client.post("/webhooks/gmail/", delivery(), content_type="application/json")
        else:
            response = post_gmail(client, delivery(), bearer)
        assert response.status_code == 403, response.content
        assert WebhookEvent.objects.count() == 0

    def test_googles_certificates_are_fetched_once_through_the_gateway(self, push, keys, client):
        for n in range(2):
            assert post_gmail(client, delivery(message_id=f"p{n}"), token(keys["good"][0])).status_code == 200
        assert ProviderCall.objects.filter(provider="gmail", operation="push.certs").count() == 1

    def test_certificates_google_does_not_serve_make_pubsub_deliver_again(self, push, keys, client):
        push.replace(responses.GET, CERTS_URL, status=503)
        response = post_gmail(client, delivery(), token(keys["good"][0]))
        assert response.status_code == 503 and response.json()["error"] == "certificates_unavailable"
        assert WebhookEvent.objects.count() == 0

    def test_a_malformed_body_with_a_good_token_is_400(self, push, keys, client):
        response = post_gmail(client, {"message": {"messageId": "x", "data": "!!!"}}, token(keys["good"][0]))
        assert response.status_code == 400

    def test_history_gone_means_a_full_resync(self, gmail, user):
        from messaging.mail import services

        conn = google_conn(user)
        mailbox = Mailbox.objects.create(
            connection=conn, history_id="100", full_sync_at=timezone.now()
        )  # older than Gmail keeps (4000)
        MailMessage.objects.create(mailbox=mailbox, external_id="stale", subject="gone")
        for n in range(3):
            gmail.add(make_message(n))
        result = services.mailbox_sync(connection_id=conn.pk)
        assert result.full
        assert ("GET", "/gmail/v1/users/me/history") in gmail.requests and (
            "GET",
            "/gmail/v1/users/me/profile",
        ) in gmail.requests
        assert sorted(MailMessage.objects.values_list("external_id", flat=True)) == ["m00000", "m00001", "m00002"]
        mailbox.refresh_from_db()
        assert mailbox.history_id == str(gmail.history_id) and mailbox.full_sync_at is not None

    def test_watch_starts_push_and_the_list_then_reads_the_cache(self, push, gmail, user, user_client):
        for n in range(3):
            gmail.add(make_message(n))
        conn = google_conn(user)
        response = user_client.post(f"/api/v1/mail/{conn.pk}/sync/")
        assert response.status_code == 200, response.content
        assert ("POST", "/gmail/v1/users/me/watch") in gmail.requests
        before = len(gmail.requests)
        listed = user_client.get(f"/api/v1/mail/{conn.pk}/messages/").json()
        assert listed["source"] == "cache" and len(listed["messages"]) == 3
        assert len(gmail.requests) == before  # answered from the cache

    def test_a_message_filed_past_the_inbox_is_pushed_and_its_label_read_from_the_cache_has_it(
        self, push, keys, gmail, user, user_client, client, eager, django_capture_on_commit_callbacks
    ):
        """The cache answers every Gmail label while push keeps it fresh, but the watch asked Gmail for changes
        under INBOX alone: a message a filter filed under a label, skipping the inbox, was never pushed, and that
        label's cached list left it out until an inbox change or MAIL_CACHE_FRESH_SECONDS later."""
        gmail.add(make_message(1))
        conn = google_conn(user)
        assert user_client.post(f"/api/v1/mail/{conn.pk}/sync/").status_code == 200
        filed = make_message(2, labels=("Label_9", "UNREAD"))
        gmail.add(filed)
        gmail.history_id += 1
        gmail.history.append((gmail.history_id, {"id": str(gmail.history_id), "messagesAdded": [{"message": filed}]}))
        if gmail.pushes(filed["labelIds"]):
            response = post_gmail(client, delivery(history_id=gmail.history_id), token(keys["good"][0]))
            assert response.status_code == 200, response.content
            with django_capture_on_commit_callbacks(execute=True):
                webhook_process(WebhookEvent.objects.get(provider="gmail").pk)
        listed = user_client.get(f"/api/v1/mail/{conn.pk}/messages/", {"label": "Label_9"}).json()
        assert listed["source"] == "cache" and [m["id"] for m in listed["messages"]] == ["m00002"]


def test_deleting_a_connection_stops_the_gmail_watch_before_revoking(push, gmail, user, user_client):
    from datetime import timedelta

    conn = google_conn(user, refresh_token="1//to-revoke")
    Mailbox.objects.create(connection=conn, watch_expires_at=timezone.now() + timedelta(days=3))
    push.add(responses.POST, "https://oauth2.googleapis.com/revoke", status=200)
    response = user_client.delete(f"/api/v1/connections/{conn.pk}/")
    assert response.status_code == 200 and response.json()["revoked"] is True
    assert ("POST", "/gmail/v1/users/me/stop") in gmail.requests
    assert not Mailbox.objects.exists()


def test_disconnecting_one_of_two_connections_to_one_gmail_account_leaves_its_push_to_the_other(
    push, gmail, user, user_client, other_user, client_for
):
    """Gmail keeps one watch per mailbox: users.stop ends the pushes of every hub user who connected it."""
    from datetime import timedelta

    watch_until = timezone.now() + timedelta(days=3)
    mine = google_conn(user, refresh_token="1//mine", account_id="1098765")
    theirs = google_conn(other_user, refresh_token="1//theirs", account_id="1098765")
    Mailbox.objects.create(connection=mine, watch_expires_at=watch_until)
    Mailbox.objects.create(connection=theirs, watch_expires_at=watch_until)
    response = user_client.delete(f"/api/v1/connections/{mine.pk}/")
    assert response.status_code == 200 and response.json()["revoked"] is False
    assert ("POST", "/gmail/v1/users/me/stop") not in gmail.requests
    assert Mailbox.objects.get().connection_id == theirs.pk

    # The last connection to the mailbox stops its watch as before.
    push.add(responses.POST, "https://oauth2.googleapis.com/revoke", status=200)
    response = client_for(other_user).delete(f"/api/v1/connections/{theirs.pk}/")
    assert response.status_code == 200 and response.json()["revoked"] is True
    assert ("POST", "/gmail/v1/users/me/stop") in gmail.requests


def test_a_connection_to_the_same_gmail_account_without_push_does_not_keep_the_watch(
    push, gmail, user, user_client, other_user
):
    from datetime import timedelta

    mine = google_conn(user, account_id="1098765")
    theirs = google_conn(other_user, account_id="1098765")
    Mailbox.objects.create(connection=mine, watch_expires_at=timezone.now() + timedelta(days=3))
    Mailbox.objects.create(connection=theirs)  # synced, never watched: nothing of theirs comes by push
    response = user_client.delete(f"/api/v1/connections/{mine.pk}/")
    assert response.status_code == 200 and response.json()["revoked"] is False  # the grant is still theirs
    assert ("POST", "/gmail/v1/users/me/stop") in gmail.requests


@pytest.mark.respx(base_url=GRAPH, assert_all_called=False)
class TestGraphPush:
    def _mailbox(self, user):
        conn = ms_conn(user)
        return Mailbox.objects.create(
            connection=conn,
            subscription_id="sub-1",
            client_state="s3cret-state",
            delta_link=f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=abc",
        )

    def test_deleting_a_connection_deletes_its_graph_subscription(self, respx_mock, graph_settings, user, user_client):
        mailbox = self._mailbox(user)
        delete = respx_mock.delete("/subscriptions/sub-1").mock(return_value=httpx.Response(204))
        response = user_client.delete(f"/api/v1/connections/{mailbox.connection_id}/")
        assert response.status_code == 200 and response.json()["revoked"] is False
        assert delete.called and not Mailbox.objects.exists()

    def test_the_validation_handshake_echoes_the_token_as_plain_text(self, client):
        response = client.post(
            "/webhooks/outlook/?validationToken=Validation%3A+Testing+client+application",
            data="",
            content_type="text/plain",
        )
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        assert response.content == b"Validation: Testing client application"

    def test_a_wrong_client_state_is_403_and_stores_nothing(self, graph_settings, user, client):
        self._mailbox(user)
        body = {
            "value": [
                {
                    "subscriptionId": "sub-1",
                    "clientState": "guess",
                    "changeType": "created",
                    "resource": "x",
                    "resourceData": {"id": "AAMk1"},
                }
            ]
        }
        assert client.post("/webhooks/outlook/", body, content_type="application/json").status_code == 403
        body["value"][0]["subscriptionId"] = "unknown"
        assert client.post("/webhooks/outlook/", body, content_type="application/json").status_code == 403
        assert WebhookEvent.objects.count() == 0

    def test_a_notification_runs_a_delta_sync(
        self, respx_mock, graph_settings, user, client, eager, django_capture_on_commit_callbacks
    ):
        mailbox = self._mailbox(user)
        respx_mock.get("/me/mailFolders/inbox/messages/delta").mock(
            return_value=httpx.Response(
                200,
                json={
                    "value": [
                        {"id": "AAMk1", "subject": "New", "receivedDateTime": "2026-12-01T10:00:00Z", "isRead": False},
                        {"id": "AAMk-old", "@removed": {"reason": "deleted"}},
                    ],
                    "@odata.deltaLink": f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=next",
                },
            )
        )
        MailMessage.objects.create(mailbox=mailbox, external_id="AAMk-old")
        body = {
            "value": [
                {
                    "subscriptionId": "sub-1",
                    "clientState": "s3cret-state",
                    "changeType": "created",
                    "resource": "Users/x/Messages/AAMk1",
                    "resourceData": {"id": "AAMk1"},
                }
            ]
        }
        response = client.post("/webhooks/outlook/", body, content_type="application/json")
        assert response.status_code == 200, response.content
        event = WebhookEvent.objects.get(provider="outlook")
        assert "clientState" not in event.payload  # the shared secret is not kept
        with django_capture_on_commit_callbacks(execute=True):
            webhook_process(event.pk)
        event.refresh_from_db()
        assert event.status == "processed", event.last_error
        assert list(MailMessage.objects.values_list("external_id", flat=True)) == ["AAMk1"]
        mailbox.refresh_from_db()
        assert mailbox.delta_link.endswith("$deltatoken=next")

    def test_reauthorization_required_renews_the_subscription(
        self, respx_mock, graph_settings, user, client, eager, django_capture_on_commit_callbacks
    ):
        self._mailbox(user)
        granted = graph_expiry()
        renew = respx_mock.patch("/subscriptions/sub-1").mock(
            return_value=httpx.Response(200, json={"id": "sub-1", "expirationDateTime": granted})
        )
        respx_mock.get("/me/mailFolders/inbox/messages/delta").mock(
            return_value=httpx.Response(
                200,
                json={"value": [], "@odata.deltaLink": f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=n2"},
            )
        )
        body = {
            "value": [
                {
                    "subscriptionId": "sub-1",
                    "clientState": "s3cret-state",
                    "lifecycleEvent": "reauthorizationRequired",
                    "resource": "x",
                }
            ]
        }
        assert client.post("/webhooks/outlook/", body, content_type="application/json").status_code == 200
        event = WebhookEvent.objects.get(provider="outlook")
        assert event.type == "outlook.reauthorizationRequired"
        with django_capture_on_commit_callbacks(execute=True):
            webhook_process(event.pk)
        event.refresh_from_db()
        assert event.status == "processed", event.last_error
        assert renew.called
        assert Mailbox.objects.get().subscription_expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") == granted

    def _lifecycle(self, client, event, django_capture_on_commit_callbacks):
        body = {
            "value": [
                {"subscriptionId": "sub-1", "clientState": "s3cret-state", "lifecycleEvent": event, "resource": "x"}
            ]
        }
        assert client.post("/webhooks/outlook/", body, content_type="application/json").status_code == 200
        stored = WebhookEvent.objects.get(provider="outlook")
        assert stored.type == f"outlook.{event}"
        with django_capture_on_commit_callbacks(execute=True):
            webhook_process(stored.pk)
        stored.refresh_from_db()
        assert stored.status == "processed", stored.last_error

    def test_subscription_removed_creates_a_new_subscription_with_a_new_client_state(
        self, respx_mock, graph_settings, user, client, eager, django_capture_on_commit_callbacks
    ):
        self._mailbox(user)
        gone = respx_mock.patch("/subscriptions/sub-1").mock(
            return_value=httpx.Response(404, json={"error": {"code": "ResourceNotFound", "message": "gone"}})
        )
        create = respx_mock.post("/subscriptions").mock(
            return_value=httpx.Response(201, json={"id": "sub-2", "expirationDateTime": graph_expiry(3)})
        )
        respx_mock.get("/subscriptions").mock(return_value=httpx.Response(200, json={"value": []}))
        respx_mock.get("/me/mailFolders/inbox/messages/delta").mock(
            return_value=httpx.Response(
                200,
                json={"value": [], "@odata.deltaLink": f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=n3"},
            )
        )
        self._lifecycle(client, "subscriptionRemoved", django_capture_on_commit_callbacks)
        assert gone.called and create.called
        mailbox = Mailbox.objects.get()
        sent = json.loads(create.calls[0].request.content)
        assert mailbox.subscription_id == "sub-2" and mailbox.client_state == sent["clientState"] != "s3cret-state"

    def test_missed_notifications_run_a_delta_sync(
        self, respx_mock, graph_settings, user, client, eager, django_capture_on_commit_callbacks
    ):
        mailbox = self._mailbox(user)
        delta = respx_mock.get("/me/mailFolders/inbox/messages/delta").mock(
            return_value=httpx.Response(
                200,
                json={
                    "value": [{"id": "AAMk7", "subject": "Missed", "receivedDateTime": "2026-12-01T10:00:00Z"}],
                    "@odata.deltaLink": f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=n4",
                },
            )
        )
        self._lifecycle(client, "missed", django_capture_on_commit_callbacks)
        assert delta.calls[0].request.url.params["$deltatoken"] == "abc"  # from where the mailbox was
        assert list(MailMessage.objects.values_list("external_id", flat=True)) == ["AAMk7"]
        mailbox.refresh_from_db()
        assert mailbox.delta_link.endswith("$deltatoken=n4")

    def test_starting_push_creates_a_subscription_with_a_secret_client_state(
        self, respx_mock, graph_settings, user, user_client
    ):
        create = respx_mock.post("/subscriptions").mock(
            return_value=httpx.Response(201, json={"id": "sub-new", "expirationDateTime": "2026-12-04T10:00:00Z"})
        )
        respx_mock.get("/subscriptions").mock(return_value=httpx.Response(200, json={"value": []}))
        respx_mock.get("/me/mailFolders/inbox/messages/delta").mock(
            return_value=httpx.Response(
                200,
                json={"value": [], "@odata.deltaLink": f"{GRAPH}/me/mailFolders/inbox/messages/delta?$deltatoken=1"},
            )
        )
        conn = ms_conn(user)
        assert user_client.post(f"/api/v1/mail/{conn.pk}/sync/").status_code == 200
        sent = json.loads(create.calls[0].request.content)
        assert sent["notificationUrl"] == "https://hub.example.com/webhooks/outlook/"
        assert sent["lifecycleNotificationUrl"] == sent["notificationUrl"]
        mailbox = Mailbox.objects.get(connection=conn)
        assert (
            mailbox.subscription_id == "sub-new"
            and mailbox.client_state == sent["clientState"]
            and len(sent["clientState"]) >= 32
        )


def test_the_daily_beat_renews_watches_that_end_within_a_day(
    push, gmail, user, eager, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from messaging.mail.tasks import mail_watch_renew_due

    soon = Mailbox.objects.create(connection=google_conn(user), watch_expires_at=timezone.now() + timedelta(hours=12))
    with django_capture_on_commit_callbacks(execute=True):
        assert mail_watch_renew_due() == 1
    assert ("POST", "/gmail/v1/users/me/watch") in gmail.requests
    soon.refresh_from_db()
    assert soon.watch_expires_at > timezone.now() + timedelta(days=6)


@pytest.mark.respx(base_url=GRAPH, assert_all_called=False)
def test_the_daily_beat_renews_an_outlook_subscription_that_ends_within_a_day_and_leaves_a_far_one_alone(
    respx_mock, graph_settings, user, other_user, eager, django_capture_on_commit_callbacks
):
    from datetime import datetime, timedelta

    from integrations.models import ProviderCall
    from messaging.mail.tasks import mail_watch_renew_due

    now = timezone.now()
    soon = Mailbox.objects.create(
        connection=ms_conn(user),
        subscription_id="sub-soon",
        client_state="state-soon",
        subscription_expires_at=now + timedelta(hours=12),
    )
    far_expiry = now + timedelta(days=2)
    far = Mailbox.objects.create(
        connection=ms_conn(other_user, account="lin@contoso.com"),
        subscription_id="sub-far",
        client_state="state-far",
        subscription_expires_at=far_expiry,
    )
    granted = (now + timedelta(days=2, hours=20)).replace(microsecond=0)  # Graph may grant less than asked

    renew = respx_mock.patch("/subscriptions/sub-soon").mock(
        return_value=httpx.Response(
            200, json={"id": "sub-soon", "expirationDateTime": granted.isoformat().replace("+00:00", "Z")}
        )
    )
    untouched = respx_mock.patch("/subscriptions/sub-far").mock(return_value=httpx.Response(500))
    created = respx_mock.post("/subscriptions").mock(return_value=httpx.Response(500))

    with django_capture_on_commit_callbacks(execute=True):
        assert mail_watch_renew_due() == 1

    assert renew.call_count == 1 and not untouched.called and not created.called
    asked = datetime.fromisoformat(json.loads(renew.calls[0].request.content)["expirationDateTime"])
    assert abs((asked - now).total_seconds() - graph_settings.GRAPH_SUBSCRIPTION_MINUTES * 60) < 120
    soon.refresh_from_db()
    assert soon.subscription_expires_at == granted  # what Graph granted, not what we asked for
    assert (soon.subscription_id, soon.client_state) == ("sub-soon", "state-soon")  # extended, not replaced
    far.refresh_from_db()
    assert far.subscription_expires_at == far_expiry
    assert ProviderCall.objects.filter(operation="subscriptions.renew", outcome="ok").count() == 1
