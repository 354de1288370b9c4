"""Graph's validation tokens: what proves a rich notification (one with resource data) came from Graph.

A rich notification (`encryptedContent` on an item: Teams call events here) carries, beside the items,
`validationTokens`: JWTs that Microsoft Graph's change-notification publisher gets from the Microsoft
identity platform, one per app and tenant whose items the delivery holds. Graph's documentation asks the
receiver to check each one before trusting the content; the hub does, on top of the clientState every Graph
notification already carries (integrations.webhooks.graph). A token verifies when

- it is signed by one of the identity platform's keys (`<MICROSOFT_AUTHORITY_HOST>/common/discovery/v2.0/keys`),
  RS256 only, and is current (`exp`, `nbf`, 10 s of clock skew);
- its audience is this hub's Microsoft app (MICROSOFT_CLIENT_ID);
- the app that asked for it (`azp`, or `appid` in a v1 token) is Graph's change-notification publisher;
- it was issued for its own tenant (`iss` is that tenant's v1 or v2 issuer, `tid` the tenant).

Every token of the delivery must verify, and every rich item's `tenantId` must be one a token was issued for;
otherwise 403 and nothing is stored. The keys are fetched through the gateway (a ProviderCall
`notifications.keys` on microsoft_oauth) and cached for an hour; a token naming a key the cached set does not
have (Microsoft rolls its keys over) fetches them again, at most once every KEYS_REFETCH_SECONDS, so tokens with
made-up key ids cannot turn each delivery into a fetch. When the keys cannot be read the delivery is answered
503, so Graph delivers it again.
"""

import time

import jwt
from django.conf import settings
from django.core.cache import cache

from ..errors import ProviderError, error_from_http
from .verify import WebhookRejected

# Microsoft Graph Change Tracking: the app the identity platform issues validation tokens to.
PUBLISHER_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
KEYS_CACHE_KEY = "webhooks:microsoft-notification-keys"
KEYS_CACHE_SECONDS = 3600
KEYS_REFETCH_SECONDS = 300
CLOCK_SKEW_SECONDS = 10


def keys_url():
    return f"{settings.MICROSOFT_AUTHORITY_HOST.rstrip('/')}/common/discovery/v2.0/keys"


def _fetch_keys():
    """{kid: JWK dict} as the identity platform publishes them, through the gateway."""
    from .. import egress, gateway
    from ..oauth.providers import recording
    from ..oauth.providers.microsoft import MICROSOFT_OAUTH

    session = recording(egress.session())
    with MICROSOFT_OAUTH.attempt("notifications.keys", session=session):
        response = session.get(keys_url(), timeout=gateway.timeout_for(MICROSOFT_OAUTH.provider))
        if response.status_code != 200:
            raise error_from_http(MICROSOFT_OAUTH.provider, response.status_code, headers=dict(response.headers))
        try:
            keys = response.json()["keys"]
        except (ValueError, KeyError, TypeError):
            raise error_from_http(MICROSOFT_OAUTH.provider, 502) from None
    return {key["kid"]: key for key in keys if isinstance(key, dict) and isinstance(key.get("kid"), str)}


def _keys(kid):
    """The cached key set, fetched again when it lacks `kid` and was fetched long enough ago."""
    entry = cache.get(KEYS_CACHE_KEY)
    if entry is None or (kid not in entry["keys"] and time.time() - entry["at"] >= KEYS_REFETCH_SECONDS):
        try:
            entry = {"at": time.time(), "keys": _fetch_keys()}
        except ProviderError:
            raise WebhookRejected(
                503, "certificates_unavailable", "Microsoft's token signing keys cannot be read now; deliver again."
            ) from None
        cache.set(KEYS_CACHE_KEY, entry, KEYS_CACHE_SECONDS)
    return entry["keys"]


def _issuers(tenant):
    return {
        f"https://sts.windows.net/{tenant}/",
        f"{settings.MICROSOFT_AUTHORITY_HOST.rstrip('/')}/{tenant}/v2.0",
    }


def token_tenant(token):
    """The tenant a validation token was issued for, when it verifies (see the module docstring); else None."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError:
        return None
    jwk = _keys(kid).get(kid) if isinstance(kid, str) else None
    if jwk is None:
        return None
    try:
        claims = jwt.decode(
            token,
            jwt.PyJWK(jwk, algorithm="RS256").key,
            algorithms=["RS256"],
            audience=settings.MICROSOFT_CLIENT_ID,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "aud", "iss", "tid"]},
        )
    except (jwt.InvalidTokenError, jwt.PyJWKError):
        return None
    if (claims.get("azp") or claims.get("appid")) != PUBLISHER_APP_ID:
        return None
    tenant = claims["tid"]
    return tenant if isinstance(tenant, str) and claims["iss"] in _issuers(tenant) else None


def validation_tokens_check(tokens, *, tenants):
    """403 unless every token verifies and together they cover every tenant in `tenants` (the rich items')."""
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
        raise WebhookRejected(403, "missing_signature", "A notification with resource data needs its validationTokens.")
    verified = set()
    for token in tokens:
        tenant = token_tenant(token)
        if tenant is None:
            raise WebhookRejected(
                403,
                "bad_signature",
                "A validation token does not verify: not signed by the Microsoft identity platform, expired, "
                "not for this hub's app (MICROSOFT_CLIENT_ID), or not issued to Graph's notification publisher.",
            )
        verified.add(tenant)
    if not set(tenants) <= verified:
        raise WebhookRejected(403, "bad_signature", "No validation token was issued for the notification's tenant.")
