"""Google Cloud Pub/Sub push deliveries (Gmail watch, Meet's Workspace Events): one verifier base for both.

A push is `POST` with `Authorization: Bearer <OIDC JWT>` that Google signs for the push subscription's
audience and service account, and a JSON envelope `{"message": {"messageId", "data" (base64 JSON),
"attributes", "publishTime"}, "subscription"}`. The base class checks what every push shares: the bearer
scheme, the token (google-auth's `id_token.verify_token`: Google's signature, expiry with 10 s of skew,
audience; then the issuer), that it was issued to the configured, verified service account, and the
envelope's shape. The "secret" of WebhookVerifier is the audience (comma-separated while a subscription's
audience changes). The token's own lifetime is the replay window; duplicates are the inbox's.

Google's certificates (GOOGLE_OIDC_CERTS_URL) are fetched through the subclass's provider adapter (a
ProviderCall `push.certs` on that provider) and cached for an hour: they rotate daily with overlap, so an
hour-old copy verifies every current token. When they cannot be read the push is answered 503, so Pub/Sub
delivers it again (it retries every non-2xx answer), never 403.
"""

import base64
import json

from django.conf import settings
from django.core.cache import cache

from ..errors import ProviderError, error_from_http
from .verify import WebhookRejected, WebhookVerifier, json_body, secrets_from

GOOGLE_ISSUERS = {"accounts.google.com", "https://accounts.google.com"}
CERTS_CACHE_KEY = "webhooks:google-oidc-certs"
CERTS_CACHE_SECONDS = 3600


def _certs_request(adapter):
    """google-auth's transport for the certificate fetch: through `adapter` (a ProviderCall), cached."""
    from google.auth import transport

    from .. import egress, gateway

    class Response(transport.Response):
        def __init__(self, data):
            self._data = data

        status = 200
        headers = {}

        @property
        def data(self):
            return self._data

    class CertsRequest(transport.Request):
        def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
            key = f"{CERTS_CACHE_KEY}:{url}"
            data = cache.get(key)
            if data is None:
                with adapter.attempt("push.certs") as att:
                    response = egress.session().get(url, timeout=gateway.timeout_for(adapter.provider))
                    att.record(http_status=response.status_code, units={"requests": 1})
                    if response.status_code != 200:
                        raise error_from_http(adapter.provider, response.status_code, headers=dict(response.headers))
                data = response.content
                cache.set(key, data, CERTS_CACHE_SECONDS)
            return Response(data)

    return CertsRequest()


def google_push_claims(token, *, audience, adapter):
    """The claims of an OIDC token Google signed for `audience` that is current; None when it does not verify.

    WebhookRejected 503 when Google's certificates cannot be read (the delivery is to be retried)."""
    from google.auth import exceptions as google_exceptions
    from google.oauth2 import id_token

    try:
        claims = id_token.verify_token(
            token,
            _certs_request(adapter),
            audience=audience,
            certs_url=settings.GOOGLE_OIDC_CERTS_URL,
            clock_skew_in_seconds=10,
        )
    except (ProviderError, google_exceptions.TransportError):
        raise WebhookRejected(
            503, "certificates_unavailable", "Google's token certificates cannot be read now; deliver again."
        ) from None
    except (ValueError, google_exceptions.GoogleAuthError):
        return None
    return claims if claims.get("iss") in GOOGLE_ISSUERS else None


class PubSubPushVerifier(WebhookVerifier):
    signature_header = "Authorization"
    content_types = ("application/json",)
    service_account_setting = ""  # the push subscription's service account (the token's `email`)

    def certs_adapter(self):
        """The ProviderAdapter the certificate fetch is logged under (imported late: it loads the provider's SDK)."""
        raise NotImplementedError

    def claims(self, token, audience):
        """The verified token's claims, or None when it does not verify."""
        return google_push_claims(token, audience=audience, adapter=self.certs_adapter())

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
        except (ValueError, TypeError, RecursionError):
            raise WebhookRejected(400, "malformed_body", "message.data is not base64-encoded JSON.") from None
        if not isinstance(data, dict):
            raise WebhookRejected(400, "malformed_body", "message.data must be a JSON object.")
        return body, message, data
