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

The verifiers follow integrations.webhooks.verify's function shape
(`verify(request) -> InboundEvent | list`, WebhookRejected otherwise); h10's
verifier base class had not landed when this was written.
"""

import base64
import hashlib
import json
import logging

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.task_base import enqueue_on_commit
from integrations.webhooks import webhook_handler, webhook_verifier
from integrations.webhooks.inbox import receive_webhook
from integrations.webhooks.verify import InboundEvent, WebhookRejected, json_body, signatures_match

from .models import Mailbox
from .tasks import mail_sync, mail_watch_renew

logger = logging.getLogger(__name__)

GOOGLE_ISSUERS = {"accounts.google.com", "https://accounts.google.com"}
CERTS_CACHE_KEY = "mail:google-oidc-certs"


# --- Gmail (Pub/Sub push with an OIDC token) ------------------------------------------


def _google_certs():
    """Google's token-signing certificates, cached for an hour (they rotate daily, overlapping)."""
    certs = cache.get(CERTS_CACHE_KEY)
    if certs is None:
        from .providers.push import fetch_google_certs

        certs = fetch_google_certs(settings.GOOGLE_OIDC_CERTS_URL)
        cache.set(CERTS_CACHE_KEY, certs, 3600)
    return certs


@webhook_verifier("gmail")
def verify_gmail(request):
    if not settings.GMAIL_PUSH_AUDIENCE or not settings.GMAIL_PUSH_SERVICE_ACCOUNT:
        raise WebhookRejected(
            503,
            "webhook_not_configured",
            "Gmail push is not configured; set GMAIL_PUSH_AUDIENCE and GMAIL_PUSH_SERVICE_ACCOUNT on the hub.",
        )
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise WebhookRejected(403, "missing_token", "The push has no OIDC bearer token.")
    from .providers.push import verify_google_token

    claims = verify_google_token(header[7:], certs=_google_certs, audience=settings.GMAIL_PUSH_AUDIENCE)
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise WebhookRejected(403, "invalid_token", "The push token was not issued by Google.")
    if claims.get("email") != settings.GMAIL_PUSH_SERVICE_ACCOUNT or not claims.get("email_verified"):
        raise WebhookRejected(403, "invalid_token", "The push token is not for the configured service account.")
    body = json_body(request)
    message = body.get("message")
    if not isinstance(message, dict) or not message.get("messageId") or not message.get("data"):
        raise WebhookRejected(400, "malformed_body", "A Pub/Sub push needs message.messageId and message.data.")
    try:
        data = json.loads(base64.b64decode(message["data"]))
    except (ValueError, TypeError):
        raise WebhookRejected(400, "malformed_body", "message.data is not base64-encoded JSON.") from None
    if not isinstance(data, dict) or not data.get("emailAddress"):
        raise WebhookRejected(400, "malformed_body", "message.data has no emailAddress.")
    return InboundEvent(
        event_id=str(message["messageId"]),
        type="gmail.history",
        payload={"data": data, "message": message, "subscription": body.get("subscription", "")},
    )


@webhook_handler("gmail", "gmail.history")
def on_gmail_history(event):
    address = event.payload["data"]["emailAddress"]
    mailboxes = Mailbox.objects.filter(
        connection__provider="google_oauth", connection__account__iexact=address, connection__status="active"
    )
    for connection_id in mailboxes.values_list("connection_id", flat=True):
        enqueue_on_commit(mail_sync, connection_id)


# --- Outlook (Graph change notifications) ------------------------------------------------


def _notification_id(item):
    # Graph notifications carry no id of their own; a redelivery is byte-for-byte the same notification.
    return hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()


def verify_outlook(request):
    body = json_body(request)
    items = body.get("value")
    if not isinstance(items, list) or not items:
        raise WebhookRejected(400, "malformed_body", "A Graph notification has a non-empty `value` list.")
    events = []
    for item in items:
        if not isinstance(item, dict) or not item.get("subscriptionId"):
            raise WebhookRejected(400, "malformed_body", "Each notification needs a subscriptionId.")
        mailbox = Mailbox.objects.filter(subscription_id=item["subscriptionId"]).first()
        # An unknown subscription and a wrong clientState look the same: neither proves the sender is Graph.
        if (
            mailbox is None
            or not mailbox.client_state
            or not signatures_match(mailbox.client_state, item.get("clientState", ""))
        ):
            raise WebhookRejected(403, "invalid_client_state", "The clientState does not match this subscription.")
        kind = item.get("lifecycleEvent") or item.get("changeType") or "changed"
        events.append(
            InboundEvent(
                event_id=_notification_id(item),
                type=f"outlook.{kind}",
                payload={
                    **{k: v for k, v in item.items() if k != "clientState"},
                    "connection_id": mailbox.connection_id,
                },
            )
        )
    return events


@csrf_exempt
def outlook_webhook(request):
    """POST /webhooks/outlook/: the validation handshake (echo validationToken as text/plain), else notifications."""
    token = request.GET.get("validationToken")
    if token is not None and request.method == "POST":
        # Graph checks that the URL answers within 10 seconds with the token, as plain text.
        return HttpResponse(token[:1024], content_type="text/plain", status=200)
    return receive_webhook(request, provider="outlook", verify=verify_outlook)


@webhook_handler(
    "outlook", "outlook.created", "outlook.updated", "outlook.deleted", "outlook.missed", "outlook.changed"
)
def on_outlook_change(event):
    enqueue_on_commit(mail_sync, event.payload["connection_id"])


@webhook_handler("outlook", "outlook.reauthorizationRequired", "outlook.subscriptionRemoved")
def on_outlook_lifecycle(event):
    """Graph wants the subscription renewed (or removed it): renew or re-create it, then catch up."""
    enqueue_on_commit(mail_watch_renew, event.payload["connection_id"])
    enqueue_on_commit(mail_sync, event.payload["connection_id"])
