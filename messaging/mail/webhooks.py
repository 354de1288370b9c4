"""Push for mail: Gmail via Pub/Sub push (OIDC-signed), Outlook via Graph change notifications.

Both arrive through the inbox (integrations.webhooks): verified here, stored
once per event id, processed by a worker, replayable from admin. Handlers only
run `mailbox_sync`, which reads the provider's own change log (Gmail history
from the stored historyId, Graph delta from the stored link), so duplicates,
replays and notifications out of order are harmless: the last sync wins and
is always complete.

Handlers only queue tasks: the inbox runs them inside its batch transaction,
and provider calls belong outside transactions (a rollback would take the call
log row with it while the provider was called).

Both verifiers subclass integrations.webhooks.WebhookVerifier (Gmail directly,
Outlook through integrations.webhooks.graph, shared with calendars) and are
held to tests/contracts/webhooks.py.
"""

import logging

from integrations.task_base import enqueue_on_commit
from integrations.webhooks import (
    InboundEvent,
    WebhookRejected,
    safe_headers,
    webhook_handler,
    webhook_verifier,
)
from integrations.webhooks.graph import (
    GraphNotificationVerifier,
    GraphSubscriptionRef,
    change_types,
    graph_webhook_view,
)
from integrations.webhooks.pubsub import PubSubPushVerifier

from .models import Mailbox
from .tasks import mail_sync, mail_watch_renew

logger = logging.getLogger(__name__)

# --- Gmail (Pub/Sub push with an OIDC token) ------------------------------------------


class GmailPushVerifier(PubSubPushVerifier):
    """A Pub/Sub push: `Authorization: Bearer <OIDC JWT>` signed by Google for our audience and service account.

    The "secret" of the base class is the audience (GMAIL_PUSH_AUDIENCE; comma-separated while a push
    subscription's audience changes): a token verifies when Google's certificates check its signature,
    it is current, its audience is one configured, its issuer is Google and its email is
    GMAIL_PUSH_SERVICE_ACCOUNT (verified); see integrations.webhooks.pubsub. Duplicates are the inbox's
    (Pub/Sub messageId).
    """

    provider = "gmail"
    secret_setting = "GMAIL_PUSH_AUDIENCE"
    service_account_setting = "GMAIL_PUSH_SERVICE_ACCOUNT"

    def certs_adapter(self):
        from .providers.gmail import GMAIL

        return GMAIL

    def parse(self, request):
        body, message, data = self.envelope(request)
        if not isinstance(data.get("emailAddress"), str) or not data["emailAddress"]:
            raise WebhookRejected(400, "malformed_body", "message.data has no emailAddress.")
        return InboundEvent(
            event_id=str(message["messageId"])[:255],
            type="gmail.history",
            payload={"data": data, "message": message, "subscription": body.get("subscription", "")},
            headers=safe_headers(request, ["Content-Type", "User-Agent"]),
        )


verify_gmail = webhook_verifier("gmail")(GmailPushVerifier())


@webhook_handler("gmail", "gmail.history")
def on_gmail_history(event):
    address = event.payload["data"]["emailAddress"]
    mailboxes = Mailbox.objects.filter(
        connection__provider="google_oauth", connection__account__iexact=address, connection__status="active"
    )
    for connection_id in mailboxes.values_list("connection_id", flat=True):
        enqueue_on_commit(mail_sync, connection_id)


# --- Outlook (Graph change notifications) ------------------------------------------------


class OutlookMailVerifier(GraphNotificationVerifier):
    """Notifications of the inbox subscriptions (Mailbox.subscription_id), checked against Mailbox.client_state."""

    provider = "outlook"

    def lookup(self, subscription_id):
        mailbox = (
            Mailbox.objects.filter(subscription_id=subscription_id, connection__provider="microsoft_oauth")
            .only("client_state", "connection_id")
            .first()
        )
        if mailbox is None:
            return None
        return GraphSubscriptionRef([mailbox.client_state], {"connection_id": mailbox.connection_id})


verify_outlook = OutlookMailVerifier()
# POST /webhooks/outlook/: the validationToken handshake (text/plain echo), else the inbox.
outlook_webhook = graph_webhook_view(verify_outlook)


@webhook_handler("outlook", *change_types("outlook"), "outlook.missed")
def on_outlook_change(event):
    enqueue_on_commit(mail_sync, event.payload["connection_id"])


@webhook_handler("outlook", "outlook.reauthorizationRequired", "outlook.subscriptionRemoved")
def on_outlook_lifecycle(event):
    """Graph wants the subscription renewed (or removed it): renew or re-create it, then catch up."""
    enqueue_on_commit(mail_watch_renew, event.payload["connection_id"])
    enqueue_on_commit(mail_sync, event.payload["connection_id"])
