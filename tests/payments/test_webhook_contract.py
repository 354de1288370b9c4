"""Stripe's verifier held to the webhook contract every provider shares (tests/contracts/webhooks.py)."""

import json

from tests.contracts.webhooks import SignedTimestampContract, WebhookContract

from . import stripe_fakes as fakes


class TestStripeWebhookContract(SignedTimestampContract, WebhookContract):
    url = "/webhooks/stripe/"
    secret_setting = "STRIPE_WEBHOOK_SECRET"
    provider_fixtures = ("stripe_configured",)
    tolerance_seconds = 300

    def event(self, n):
        return fakes.event("customer.created", {"id": f"cus_contract_{n}", "object": "customer"}, event_id=f"evt_c{n}")

    def malformed(self):
        return {"id": "evt_no_type", "object": "event"}  # signed, JSON, but no type or data.object

    def post(self, client, body, *, secret, timestamp=None, signature=None, content_type=None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {}
        signature = fakes.sign(raw, secret, timestamp) if signature is None else signature
        if signature:
            headers["Stripe-Signature"] = signature
        return client.post(self.url, raw, content_type=content_type or "application/json", headers=headers)
