"""Webhook provider `benchhook` for the inbox benchmark (autodiscovered by integrations).

The verifier is the inbox tests' Stripe-scheme one (`X-Hubtest-Signature:
t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>")`, 300 s tolerance), so the
benchmark pays for a real HMAC check and JSON parse per delivery. The handler
counts each handling in a Redis hash (HINCRBY per event id) outside the
database transaction, so a second run of any event shows up as a count of 2.
"""

from integrations.redis import get_client, key
from integrations.webhooks import webhook_handler, webhook_verifier
from tests.integrations.webhook_provider import verify

PROVIDER = "benchhook"
EVENT_TYPE = "thing.updated"


def handled_key():
    return key("bench", "handled")


webhook_verifier(PROVIDER)(verify)


@webhook_handler(PROVIDER, EVENT_TYPE)
def on_thing_updated(event):
    get_client().hincrby(handled_key(), event.event_id, 1)


def count_stripe_handlers(count_key):
    """Wrap every registered Stripe handler: after its batch commits, HINCRBY count_key <event id> 1."""
    from django.db import transaction

    from integrations.webhooks.registry import HANDLERS

    def counted(handler):
        def run(event):
            handler(event)
            transaction.on_commit(lambda: get_client().hincrby(count_key, event.event_id, 1))

        return run

    for (provider, event_type), handler in list(HANDLERS.items()):
        if provider == "stripe":
            HANDLERS[(provider, event_type)] = counted(handler)
