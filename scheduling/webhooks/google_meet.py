"""Google Meet's lifecycle events: Workspace Events delivered by a Pub/Sub push to POST /webhooks/google-meet/.

Verification (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions), a WebhookVerifier:
the push subscription sends `Authorization: Bearer <OIDC JWT>` that Google signed for the audience set on
it (GOOGLE_MEET_PUSH_AUDIENCE; comma-separated while it changes) and for its service account
(GOOGLE_MEET_PUSH_SERVICE_ACCOUNT, `email` with `email_verified`). google-auth checks the signature against
Google's certificates (GOOGLE_OIDC_CERTS_URL), the expiry (the token's lifetime is the replay window) and the
audience; a bad, foreign, expired or missing token is 403 and nothing is stored. When Google's certificates
cannot be read the answer is 503, so Pub/Sub delivers again (it retries every non-2xx answer).

The message (https://developers.google.com/workspace/events/guides/events-structure): the CloudEvent's
attributes (`ce-id`, `ce-type`, `ce-time`, `ce-source` = the subscription, `ce-subject` = the space) and
base64 JSON data naming the resource that changed (conferenceRecord, participantSession, recording,
transcript) without its content. The CloudEvent id is the event id (a Pub/Sub redelivery, or the same event
published twice, is stored once); without it the Pub/Sub messageId.

Handlers only queue: the inbox runs them inside its batch transaction, and the Meet REST API reads that
resolve an event belong outside it (`scheduling.meet_event_apply`, see scheduling.meet_events for the
ordering guarantees). An event for a space the hub does not hold a subscription for is stored and ignored.
Subscription lifecycle events renew (expirationReminder) or re-create (expired) it; a suspension is acted on by
its reason (meet_events.meet_subscription_suspended: reactivated, left to the owner, or ended).
"""

from django.views.decorators.csrf import csrf_exempt

from integrations.task_base import enqueue_on_commit
from integrations.webhooks import (
    InboundEvent,
    WebhookIgnored,
    WebhookRejected,
    receive_webhook,
    safe_headers,
    webhook_handler,
    webhook_verifier,
)
from integrations.webhooks.pubsub import PubSubPushVerifier

from .. import meet_events, services
from ..models import MeetingSubscription

PROVIDER = "google_meet"
MEET_EVENTS = tuple(
    f"google.workspace.meet.{t}"
    for t in (
        "conference.v2.started",
        "conference.v2.ended",
        "participant.v2.joined",
        "participant.v2.left",
        "recording.v2.fileGenerated",
        "transcript.v2.fileGenerated",
    )
)
LIFECYCLE = "google.workspace.events.subscription.v1."


class GoogleMeetPushVerifier(PubSubPushVerifier):
    """A Pub/Sub push whose OIDC token Google signed for our audience and push service account."""

    provider = PROVIDER
    secret_setting = "GOOGLE_MEET_PUSH_AUDIENCE"
    service_account_setting = "GOOGLE_MEET_PUSH_SERVICE_ACCOUNT"

    def certs_adapter(self):
        from ..providers.google_meet import MEET

        return MEET

    def parse(self, request):
        body, message, data = self.envelope(request)
        attributes = message.get("attributes") or {}
        if not isinstance(attributes, dict) or not isinstance(attributes.get("ce-type"), str):
            raise WebhookRejected(400, "malformed_body", "A Workspace event carries its type in the ce-type attribute.")
        return InboundEvent(
            event_id=str(attributes.get("ce-id") or message["messageId"])[:255],
            type=attributes["ce-type"],
            payload={
                "attributes": {k: v for k, v in attributes.items() if isinstance(v, str)},
                "data": data,
                "message_id": str(message["messageId"]),
                "publish_time": message.get("publishTime", ""),
                "subscription": body.get("subscription", ""),
            },
            occurred_at=services.parse_time(attributes.get("ce-time")),
            headers=safe_headers(request, ["Content-Type", "User-Agent"]),
        )


VERIFIER = GoogleMeetPushVerifier()
verify_google_meet = webhook_verifier(PROVIDER)(VERIFIER)


@csrf_exempt  # Pub/Sub cannot send a CSRF token; the OIDC token authenticates the push
def google_meet_webhook(request):
    return receive_webhook(request, provider=PROVIDER, verify=verify_google_meet)


def _subscription(event):
    sub = meet_events.subscription_for(event.payload)
    if sub is None:
        subject = (event.payload.get("attributes") or {}).get("ce-subject", "")
        raise WebhookIgnored(f"the hub holds no Meet subscription for {subject or 'this event'}")
    return sub


@webhook_handler(PROVIDER, *MEET_EVENTS)
def on_meet_event(event):
    from ..tasks import meet_event_apply

    _subscription(event)
    enqueue_on_commit(meet_event_apply, event.pk)


@webhook_handler(PROVIDER, LIFECYCLE + "expirationReminder")
def on_expiring(event):
    from ..tasks import meet_subscription_renew_task

    enqueue_on_commit(meet_subscription_renew_task, _subscription(event).pk)


@webhook_handler(PROVIDER, LIFECYCLE + "expired")
def on_expired(event):
    from ..tasks import meet_subscribe

    sub = _subscription(event)
    MeetingSubscription.objects.filter(pk=sub.pk).update(status=MeetingSubscription.Status.ENDED)
    enqueue_on_commit(meet_subscribe, sub.meeting_id)  # a meeting that can still produce events subscribes anew


@webhook_handler(PROVIDER, LIFECYCLE + "suspended")
def on_suspended(event):
    found = (event.payload.get("data") or {}).get("subscription") or {}
    # Reactivated (a task), left failed naming what the owner must do, or ended: by Google's suspensionReason.
    meet_events.meet_subscription_suspended(_subscription(event), found if isinstance(found, dict) else {})


@webhook_handler(PROVIDER, "*")
def on_other(event):
    raise WebhookIgnored(f"the hub does not act on Google's {event.type}")
