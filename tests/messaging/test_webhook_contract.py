"""Twilio's verifier held to the webhook contract every provider shares (tests/contracts/webhooks.py).

Twilio signs no timestamp, so there is no replay window to test: a replayed
callback is a duplicate event id, which the inbox stores once.
"""

from urllib.parse import urlencode

from tests.contracts.webhooks import WebhookContract

from .conftest import APP_URL, HUB_NUMBER, sign


class TestTwilioWebhookContract(WebhookContract):
    url = "/webhooks/twilio/sms-status/"
    secret_setting = "TWILIO_AUTH_TOKEN"
    content_type = "application/x-www-form-urlencoded"

    provider_fixtures = ("twilio",)  # account, number, APP_URL; the contract then sets the token it signs with

    def event(self, n):
        sid = f"SM{n:032d}"
        return {"MessageSid": sid, "SmsSid": sid, "MessageStatus": "sent", "From": HUB_NUMBER, "To": "+15005550006"}

    def malformed(self):
        return {"MessageStatus": "sent", "From": HUB_NUMBER}  # no MessageSid, no I-Twilio-Idempotency-Token

    def configure_rotation(self, new, old):
        # The auth token also signs REST calls, so the old one lives in a webhook-only setting.
        self.settings.TWILIO_AUTH_TOKEN = new
        self.settings.TWILIO_WEBHOOK_PREVIOUS_AUTH_TOKENS = old

    def post(self, client, body, *, secret, timestamp=None, signature=None, content_type=None):
        headers = {}
        signature = sign(self.url, body, token=secret, base=APP_URL) if signature is None else signature
        if signature:
            headers["X-Twilio-Signature"] = signature
        return client.post(self.url, urlencode(body), content_type=content_type or self.content_type, headers=headers)
