"""The webhook inbox: one verified, de-duplicated path for every provider callback.

Public API for domain apps (see registry.py for a full example):

- ``@webhook_verifier(provider)``: verify(request) -> InboundEvent for POST /webhooks/<provider>/
- ``@webhook_handler(provider, *types)``: handler(event) run by the worker ("*" = fallback)
- ``@webhook_ordering_key(provider)``: key(payload) -> the object an event is about (per-object ordering)
- ``@webhook_batch_preparer(provider)``: prepare(events) once per drained batch (e.g. one query for its rows)
- ``@webhook_batch_finisher(name)``: finish(events) once per drained batch on the events done with their payload
- ``webhook_handlers_rarely_raise(provider)``: a drained batch runs its handlers in one savepoint, not one each
- ``receive_webhook(request, *, provider, verify, respond=None)`` / ``webhook_view(...)``: custom routes
- ``record_webhook(*, provider, inbound) -> (event, created)``: store-and-respond views (Twilio voice)
- ``webhook_drain(*, provider)``: one batch (the drain task runs it); ``webhook_event_process(*, event_id)``
- ``webhook_replay(*, event)``, ``webhook_mark_ignored(*, event)``: admin services
- ``InboundEvent``, ``WebhookRejected``, ``WebhookIgnored``, ``WebhookPermanentError``
- ``WebhookVerifier``: the base every provider's verifier subclasses (shared checks, one status policy)
- bases for families of providers: ``webhooks.graph`` (Microsoft Graph subscriptions: handshake, clientState,
  lifecycle) and ``webhooks.pubsub.PubSubPushVerifier`` (Google Pub/Sub pushes: OIDC token, envelope)
- helpers: ``secrets_from``, ``safe_headers``, ``webhook_secret``, ``json_body``, ``epoch_datetime``,
  ``hmac_sha256_hex``, ``signatures_match``
"""

from .inbox import receive_webhook, record_webhook, webhook_view
from .processing import (
    WebhookIgnored,
    WebhookPermanentError,
    webhook_drain,
    webhook_event_process,
    webhook_mark_ignored,
    webhook_replay,
    webhook_requeue_stale,
)
from .registry import (
    webhook_batch_finisher,
    webhook_batch_preparer,
    webhook_handler,
    webhook_handlers_rarely_raise,
    webhook_ordering_key,
    webhook_verifier,
)
from .verify import (
    InboundEvent,
    WebhookRejected,
    WebhookVerifier,
    epoch_datetime,
    hmac_sha256_hex,
    json_body,
    safe_headers,
    secrets_from,
    signatures_match,
    webhook_secret,
)

__all__ = [
    "InboundEvent",
    "WebhookIgnored",
    "WebhookPermanentError",
    "WebhookRejected",
    "WebhookVerifier",
    "hmac_sha256_hex",
    "json_body",
    "epoch_datetime",
    "receive_webhook",
    "record_webhook",
    "safe_headers",
    "secrets_from",
    "signatures_match",
    "webhook_batch_finisher",
    "webhook_batch_preparer",
    "webhook_drain",
    "webhook_event_process",
    "webhook_handler",
    "webhook_handlers_rarely_raise",
    "webhook_mark_ignored",
    "webhook_ordering_key",
    "webhook_replay",
    "webhook_requeue_stale",
    "webhook_secret",
    "webhook_verifier",
    "webhook_view",
]
