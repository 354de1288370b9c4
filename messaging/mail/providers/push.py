"""Google's OIDC token check for Pub/Sub push, with google-auth (certificates fetched through the gateway)."""

import requests
from google.auth import exceptions as google_exceptions
from google.auth import jwt as google_jwt

from integrations import gateway
from integrations.webhooks.verify import WebhookRejected

from .gmail import GMAIL


def fetch_google_certs(url):
    with GMAIL.attempt("push.certs") as att:
        response = requests.get(url, timeout=gateway.timeout_for("gmail"))
        att.record(http_status=response.status_code, units={"requests": 1})
        response.raise_for_status()
    return response.json()


def verify_google_token(token, *, certs, audience):
    """The token's claims if Google signed it for `audience` and it is current; 403 otherwise."""
    try:
        return google_jwt.decode(token, certs=certs(), audience=audience, clock_skew_in_seconds=10)
    except (ValueError, google_exceptions.GoogleAuthError) as exc:
        raise WebhookRejected(403, "invalid_token", f"The push token does not verify ({str(exc)[:120]}).") from None
