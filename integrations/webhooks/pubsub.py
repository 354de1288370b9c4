"""Google Cloud Pub/Sub push deliveries (Gmail watch, Meet's Workspace Events): one verifier base for both.

A push is `POST` with `Authorization: Bearer <OIDC JWT>` that Google signs for the push subscription's
audience and service account, and a JSON envelope `{"message": {"messageId", "data" (base64 JSON),
"attributes", "publishTime"}, "subscription"}`. The base class checks what every push shares: the bearer
scheme, the token's claims (a subclass's `claims(token, audience)` verifies signature, expiry, audience and
issuer), that it was issued to the configured, verified service account, and the envelope's shape. The
"secret" of WebhookVerifier is the audience (comma-separated while a subscription's audience changes).
"""

import base64
import json

from django.conf import settings

from .verify import WebhookRejected, WebhookVerifier, json_body, secrets_from


class PubSubPushVerifier(WebhookVerifier):
    signature_header = "Authorization"
    content_types = ("application/json",)
    service_account_setting = ""  # the push subscription's service account (the token's `email`)

    def claims(self, token, audience):
        """The verified token's claims, or None when it does not verify (raise WebhookRejected for a 5xx)."""
        raise NotImplementedError

    def secrets(self):
        if not getattr(settings, self.service_account_setting, ""):
            return []  # 503 naming the audience setting; the README names both
        return secrets_from(self.secret_setting)

    def bad_signature_detail(self):
        return (
            "The push's OIDC token does not verify: not signed by Google, expired, or not for "
            f"{self.secret_setting} and {self.service_account_setting}."
        )

    def signature_matches(self, request, signature, secret):
        scheme, _, token = signature.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        claims = self.claims(token.strip(), secret)
        return (
            claims is not None
            and claims.get("email") == getattr(settings, self.service_account_setting)
            and claims.get("email_verified") is True
        )

    def envelope(self, request):
        """(body, message, data): the push's JSON, its message, and the message's data decoded (a JSON object)."""
        body = json_body(request)
        message = body.get("message")
        if not isinstance(message, dict) or not message.get("messageId") or not message.get("data"):
            raise WebhookRejected(400, "malformed_body", "A Pub/Sub push needs message.messageId and message.data.")
        try:
            data = json.loads(base64.b64decode(message["data"], validate=True))
        except (ValueError, TypeError):
            raise WebhookRejected(400, "malformed_body", "message.data is not base64-encoded JSON.") from None
        if not isinstance(data, dict):
            raise WebhookRejected(400, "malformed_body", "message.data must be a JSON object.")
        return body, message, data
