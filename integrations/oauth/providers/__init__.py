"""Adapters that speak OAuth to each provider; each returns TokenSet and raises the hub's errors.

An adapter implements:
    authorization_url(config, *, state, code_verifier, scopes, redirect_uri, offline, login_hint) -> (url, flow)
    exchange(config, *, code, params, state, redirect_uri, owner) -> TokenSet
    refresh(config, *, connection) -> TokenSet
    revoke(config, *, connection) -> bool      (False: the provider has no revocation; deleted locally only)
Every HTTP request they make runs inside the attempt of a `TokenEndpointAdapter`
(integrations.providers' contract: gateway.attempt plus the library's errors
translated once): `oauth2.OAuth2Adapter` for requests-oauthlib (Google's
`GOOGLE_OAUTH`, and any RFC provider such as Webex), `microsoft.MICROSOFT_OAUTH`
for msal.
"""

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.utils import timezone

from integrations import egress
from integrations.errors import PermanentError, error_from_http
from integrations.providers import ProviderAdapter


class InvalidGrant(PermanentError):
    """The provider refused the grant (revoked consent, expired or reused refresh token): only the user can fix it."""

    api_status = 409
    api_code = "connection_needs_reauth"


@dataclass
class TokenSet:
    access_token: str
    expires_at: datetime | None
    # Empty when the provider did not send one (Google on a refresh, or without access_type=offline).
    refresh_token: str = ""
    # As granted; None when the response did not say (then the previous grant stands).
    scopes: list | None = None
    account: str = ""
    account_id: str = ""
    claims: dict = field(default_factory=dict)


def recording(session=None):
    """`session` (a new requests.Session by default) remembering its responses, so status and headers reach the
    call log and error_from_http.

    The session follows the egress rule (integrations.egress.configure: the proxy for each token endpoint's host,
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE as requests reads them, nothing read per request). OAUTH_CA_BUNDLE (a
    local identity provider with its own certificate) wins over the environment's bundle.
    """
    session = egress.configure(session if session is not None else requests.Session())
    session.responses = []
    session.hooks["response"].append(lambda response, *args, **kwargs: session.responses.append(response))
    bundle = getattr(settings, "OAUTH_CA_BUNDLE", "")
    if bundle:
        session.verify = bundle
    return session


def last_response(session):
    return session.responses[-1] if session.responses else None


def expiry(seconds):
    """An aware UTC expiry from a token response's expires_in (None when absent or unreadable)."""
    try:
        return timezone.now() + timedelta(seconds=int(seconds))
    except (TypeError, ValueError):
        return None


def response_error(provider, session, *, error="", description=""):
    """The hub's error for a failed token-endpoint response: NEEDS_USER is InvalidGrant, the rest by HTTP status."""
    return refusal(provider, last_response(session), error=error, description=description)


# Refusals that only the user can clear, by authorizing again. Besides RFC 6749's invalid_grant, Microsoft's token
# endpoint answers a refresh with OpenID Connect's interaction errors (a new MFA or Conditional Access rule, consent
# an admin withdrew); msal classes them with invalid_grant as "interaction required". Taken for the provider's
# trouble they left the connection active, every call a 502 and the refresh retried for good.
NEEDS_USER = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})


def refusal(provider, response, *, error="", description=""):
    """response_error for the answer itself (None: no answer was recorded)."""
    status = response.status_code if response is not None else None
    headers = dict(response.headers) if response is not None else {}
    if error in NEEDS_USER:
        return InvalidGrant(provider, description or error, code=error, http_status=status)
    if status is None or status < 400:
        status = 400  # an error body on a 200 is still a refusal
    return error_from_http(provider, status, headers=headers, code=error or None, message=description or error)


def scope_list(value):
    if value is None:
        return None
    if isinstance(value, str):
        return [s for s in value.split() if s]
    return [str(s) for s in value]


class TokenEndpointAdapter(ProviderAdapter):
    """Token-endpoint requests over a `recording()` session (requests-oauthlib, msal).

    `attempt(operation, session=...)` is one gateway attempt whose call log gets
    the status of the session's last answer and how many requests it took. The
    libraries raise without the HTTP answer (oauthlib's errors carry only the
    `error` code), so the answer is attached to the exception as
    `token_response` for `translate` to decide by status and headers.
    An instance serves one registry name; `for_provider` gives one for another
    provider with the same library (an RFC provider such as Webex).
    """

    def __init__(self, provider=None):
        if provider:
            self.provider = provider

    def for_provider(self, provider):
        return self if provider == self.provider else type(self)(provider)

    @contextlib.contextmanager
    def attempt(self, operation, *, session=None, **options):
        with super().attempt(operation, **options) as att:
            try:
                yield att
            except self.sdk_errors as exc:
                exc.token_response = last_response(session) if session is not None else None
                raise
            finally:
                response = last_response(session) if session is not None else None
                if response is not None:
                    att.record(http_status=response.status_code, units={"requests": len(session.responses)})
