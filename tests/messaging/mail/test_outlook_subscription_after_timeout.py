"""A Graph mail subscription whose create timed out after Graph made it: found before another is made."""

import json

import httpx
import pytest

from messaging.mail.models import Mailbox

from .conftest import GRAPH, graph_expiry, ms_conn

pytestmark = [pytest.mark.django_db, pytest.mark.respx(base_url=GRAPH, assert_all_called=False)]

DELTA = "/me/mailFolders/inbox/messages/delta"
HOOK = "https://hub.example.com/webhooks/outlook/"


class GraphSubscriptions:
    """Graph's /subscriptions for one user and this app: what exists, the clientState each was made with (which
    GET /subscriptions does not answer: null), and a create that Graph keeps but whose answer is lost."""

    def __init__(self, respx_mock):
        self.made, self.secrets, self.lose_next_answer = {}, {}, False
        respx_mock.post("/subscriptions").mock(side_effect=self.create)
        respx_mock.get("/subscriptions").mock(side_effect=self.list)
        respx_mock.delete(url__regex=r".*/subscriptions/[^/]+$").mock(side_effect=self.delete)
        respx_mock.get(DELTA).mock(
            return_value=httpx.Response(200, json={"value": [], "@odata.deltaLink": f"{GRAPH}{DELTA}?$deltatoken=1"})
        )

    def create(self, request):
        body = json.loads(request.content)
        sub_id = f"sub-{len(self.secrets) + 1}"
        self.made[sub_id] = {
            "id": sub_id,
            "resource": body["resource"],
            "changeType": body["changeType"],
            "notificationUrl": body["notificationUrl"],
            "expirationDateTime": graph_expiry(3),
            "clientState": None,
        }
        self.secrets[sub_id] = body["clientState"]
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise httpx.ReadTimeout("The read operation timed out", request=request)
        return httpx.Response(201, json={**self.made[sub_id], "clientState": body["clientState"]})

    def list(self, request):
        return httpx.Response(200, json={"value": list(self.made.values())})

    def delete(self, request):
        sub_id = request.url.path.rsplit("/", 1)[1]
        if self.made.pop(sub_id, None) is None:
            return httpx.Response(404, json={"error": {"code": "ResourceNotFound", "message": "gone"}})
        return httpx.Response(204)


def test_a_retry_after_a_create_that_timed_out_leaves_one_subscription_the_hub_knows(
    respx_mock, graph_settings, user, other_user, user_client
):
    """Graph made the subscription but its answer never came: the hub recorded nothing, and the retry made a
    second one. The first, unknown to the hub, sent every inbox change to it (refused, no clientState to check)
    until it lapsed days later."""
    graph = GraphSubscriptions(respx_mock)
    # Another hub user's connection to the same Outlook account: its subscription is recorded and stays.
    graph.made["sub-other"] = {
        "id": "sub-other",
        "notificationUrl": HOOK,
        "resource": "me/mailFolders('inbox')/messages",
    }
    Mailbox.objects.create(connection=ms_conn(other_user), subscription_id="sub-other", client_state="other-secret")
    # The same app's calendar subscription for this user, at its own URL: not the mail's to touch.
    graph.made["sub-cal"] = {"id": "sub-cal", "notificationUrl": "https://hub.example.com/webhooks/outlook-calendar/"}
    conn = ms_conn(user)
    graph.lose_next_answer = True

    first = user_client.post(f"/api/v1/mail/{conn.pk}/sync/")
    assert first.status_code == 504, first.content
    assert Mailbox.objects.get(connection=conn).subscription_id == ""  # the hub cannot know what Graph made
    assert "sub-1" in graph.made

    retry = user_client.post(f"/api/v1/mail/{conn.pk}/sync/")
    assert retry.status_code == 200, retry.content
    mailbox = Mailbox.objects.get(connection=conn)
    assert sorted(graph.made) == sorted(["sub-cal", "sub-other", mailbox.subscription_id])
    # What Graph delivers for it verifies: the clientState it was made with is the one the hub holds.
    assert graph.secrets[mailbox.subscription_id] == mailbox.client_state
