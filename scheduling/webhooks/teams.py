"""Teams meeting notifications from Microsoft Graph (POST /webhooks/teams/).

The shared Graph checks (integrations.webhooks.graph): the validation handshake answered before the inbox,
each item's clientState compared in constant time with the one stored on its MeetingSubscription (a wrong one
is 403 and nothing is stored), lifecycle notifications to the same URL. Basic notifications only: an item
names the recording or transcript (`resourceData.id`, or the `resource` path), never its content, so the
handler queues a task that reads its metadata through the gateway with the organizer's connection
(scheduling.teams_lifecycle). Handlers only queue: the inbox runs them inside its batch transaction.

Ordering: a notification says "this artifact exists", so duplicates, replays and any order book the same row
(services.recordings_upsert is an upsert; the copy is queued only when the row is first made). Lifecycle:
reauthorizationRequired renews (a PATCH reauthorizes), subscriptionRemoved makes a new one (the renewal finds it
gone), missed lists the meeting's recordings and transcripts again.
"""

import re

from django.conf import settings

from integrations.task_base import enqueue_on_commit
from integrations.webhooks import WebhookIgnored, WebhookRejected, webhook_handler
from integrations.webhooks.graph import (
    GraphNotificationVerifier,
    GraphSubscriptionRef,
    decrypt_resource_data,
    graph_webhook_view,
    lifecycle_types,
)

from ..models import Meeting, MeetingSubscription
from ..teams_lifecycle import CALL_EVENTS, call_event_apply

PROVIDER = "teams"
# communications/onlineMeetings('{meeting}')/recordings('{id}') (Graph's own spelling of the resource)
_RESOURCE_ID = re.compile(r"/(?:recordings|transcripts)\('([^']+)'\)")


class TeamsMeetingVerifier(GraphNotificationVerifier):
    """Notifications of the hub's per-meeting subscriptions, checked against MeetingSubscription.client_state.

    Call events come as rich notifications: once the item's clientState verified, its `encryptedContent` is
    decrypted with TEAMS_CALL_EVENTS_PRIVATE_KEY into `resourceData` (the ciphertext is not kept). One that
    cannot be decrypted or whose dataSignature does not match is refused (400) and nothing is stored.
    """

    provider = PROVIDER

    def event(self, item, ref, headers):
        encrypted = item.get("encryptedContent")
        if encrypted is not None:
            try:
                resource = decrypt_resource_data(encrypted, settings.TEAMS_CALL_EVENTS_PRIVATE_KEY)
            except ValueError as exc:
                raise WebhookRejected(
                    400,
                    "undecryptable",
                    "The notification's resource data cannot be decrypted with the hub's key "
                    f"(TEAMS_CALL_EVENTS_PRIVATE_KEY): {exc}",
                ) from exc
            data = item.get("resourceData") if isinstance(item.get("resourceData"), dict) else {}
            item = {k: v for k, v in item.items() if k != "encryptedContent"}
            item["resourceData"] = {**data, **resource}
        return super().event(item, ref, headers)

    def lookup(self, subscription_id):
        sub = (
            MeetingSubscription.objects.filter(provider=Meeting.Provider.TEAMS, external_id=subscription_id)
            .only("client_state", "meeting_id", "kind")
            .first()
        )
        if sub is None:
            return None
        return GraphSubscriptionRef([sub.client_state], {"meeting_id": sub.meeting_id, "kind": sub.kind})


verify_teams = TeamsMeetingVerifier()
teams_webhook = graph_webhook_view(verify_teams)


def artifact_id(payload):
    data = payload.get("resourceData") if isinstance(payload.get("resourceData"), dict) else {}
    if isinstance(data.get("id"), str) and data["id"]:
        return data["id"]
    found = _RESOURCE_ID.search(str(payload.get("resource") or ""))
    return found.group(1) if found else ""


@webhook_handler(PROVIDER, "teams.created", "teams.updated")
def on_change(event):
    from ..tasks import teams_artifact_task

    kind = event.payload.get("kind")
    if kind == CALL_EVENTS:
        on_call_event(event)
        return
    ident = artifact_id(event.payload)
    if kind not in ("graph_recordings", "graph_transcripts") or not ident:
        raise WebhookIgnored(f"a {kind} notification without a recording or transcript id")
    enqueue_on_commit(teams_artifact_task, event.payload["meeting_id"], kind, ident)


def on_call_event(event):
    """Applied here (no provider call): the decrypted event says what happened and when."""
    meeting = Meeting.objects.filter(pk=event.payload.get("meeting_id"), provider=Meeting.Provider.TEAMS).first()
    if meeting is None:
        raise WebhookIgnored("the meeting is gone")
    data = event.payload.get("resourceData") if isinstance(event.payload.get("resourceData"), dict) else {}
    if not call_event_apply(meeting=meeting, resource=data):
        raise WebhookIgnored(f"a call event the hub does not act on ({data.get('eventType') or 'no eventType'})")


@webhook_handler(PROVIDER, "teams.deleted")
def on_deleted(event):
    raise WebhookIgnored("a recording deleted in Teams stays booked (and copied, if it was) at the hub")


@webhook_handler(PROVIDER, *lifecycle_types(PROVIDER))
def on_lifecycle(event):
    from ..tasks import teams_catch_up_task, teams_subscribe_task

    if event.type == "teams.missed":
        enqueue_on_commit(teams_catch_up_task, event.payload["meeting_id"])
    else:
        enqueue_on_commit(teams_subscribe_task, event.payload["meeting_id"])
