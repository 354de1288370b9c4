"""Standard OAuth 2.0 (RFC 6749 + PKCE, RFC 7636) over requests-oauthlib: any provider that follows the RFCs.

Google builds on this (providers.google); a provider such as Webex can use it
as it is, by naming it as the `adapter` of its OAuthProvider.

requests-oauthlib never retries; every request runs inside one attempt of an
`OAuth2Adapter`, which translates oauthlib's errors once.
"""

import base64
import hashlib

from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from requests_oauthlib import OAuth2Session

from integrations import gateway

from . import TokenEndpointAdapter, TokenSet, expiry, recording, refusal, response_error, scope_list


def code_challenge(verifier):
    """S256: BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuth2Adapter(TokenEndpointAdapter):
    """Token-endpoint calls over requests-oauthlib: an OAuth2Error (invalid_grant, invalid_client ...) becomes the
    hub's error by its code and the HTTP answer behind it."""

    sdk_errors = (OAuth2Error,)

    def translate(self, exc):
        return refusal(self.provider, exc.token_response, error=exc.error or "", description=exc.description or "")


# The RFC flow for whichever provider names StandardOAuth2 (Webex): `OAUTH2.for_provider(config.provider)`.
OAUTH2 = OAuth2Adapter()


class StandardOAuth2:
    # The call wrapper for this flow's token requests (a subclass names its provider's own).
    adapter = OAUTH2

    def token_adapter(self, config):
        return self.adapter.for_provider(config.provider)

    def session(self, config, *, scopes=None, redirect_uri=None, state=None):
        return recording(OAuth2Session(config.client_id, scope=scopes, redirect_uri=redirect_uri, state=state))

    def authorization_params(self, config, *, offline, login_hint):
        params = {}
        if login_hint:
            params["login_hint"] = login_hint
        return params

    def authorization_url(self, config, *, state, code_verifier, scopes, redirect_uri, offline, login_hint):
        session = self.session(config, scopes=scopes, redirect_uri=redirect_uri, state=state)
        url, _ = session.authorization_url(
            config.url("authorize"),
            code_challenge=code_challenge(code_verifier),
            code_challenge_method="S256",
            **self.authorization_params(config, offline=offline, login_hint=login_hint),
        )
        return url, None

    def fetch(self, config, session, operation, owner, fn):
        """Run one token-endpoint request as a gateway attempt; returns the token dict."""
        with self.token_adapter(config).attempt(operation, owner=owner, session=session):
            try:
                token = fn()
            except Warning as warning:
                # oauthlib "warns" (raises) when the granted scopes differ from the requested ones;
                # fewer scopes is a normal answer here, recorded on the connection, so keep the token.
                token = getattr(warning, "token", None)
                if token is None:
                    raise
        return dict(token)

    def token_set(self, config, token):
        return TokenSet(
            access_token=token.get("access_token") or "",
            refresh_token=token.get("refresh_token") or "",
            expires_at=expiry(token.get("expires_in")),
            scopes=scope_list(token.get("scope")),
        )

    def exchange(self, config, *, code, params, state, redirect_uri, owner):
        session = self.session(config, scopes=state.scopes, redirect_uri=redirect_uri, state=state.state)
        token = self.fetch(
            config,
            session,
            "token.exchange",
            owner,
            lambda: session.fetch_token(
                config.url("token"),
                code=code,
                code_verifier=state.code_verifier,
                client_secret=config.client_secret,
                include_client_id=True,
                timeout=gateway.timeout_for(config.provider),
            ),
        )
        return self.token_set(config, token)

    def refresh(self, config, *, connection):
        session = self.session(config)
        token = self.fetch(
            config,
            session,
            "token.refresh",
            connection.owner_id,
            lambda: session.refresh_token(
                config.url("token"),
                refresh_token=connection.refresh_token,
                # Sent in the body (client_secret_post), which every provider here accepts.
                client_id=config.client_id,
                client_secret=config.client_secret,
                timeout=gateway.timeout_for(config.provider),
            ),
        )
        return self.token_set(config, token)

    def revoke(self, config, *, connection):
        """RFC 7009: revoke the refresh token (which ends the grant); False when the provider has no endpoint."""
        if not config.revoke_url:
            return False
        token = connection.refresh_token or connection.access_token
        if not token:
            return True
        session = recording()
        with self.token_adapter(config).attempt("token.revoke", owner=connection.owner_id) as att:
            response = session.post(
                config.url("revoke"),
                data={"token": token},
                timeout=gateway.timeout_for(config.provider),
            )
            att.record(http_status=response.status_code, units={"requests": 1})
            # 400 invalid_token: already revoked or expired, which is what we wanted.
            if response.status_code >= 400 and not (response.status_code == 400 and _is_invalid_token(response)):
                raise response_error(config.provider, session, description=response.text[:200])
        return True


def _is_invalid_token(response):
    try:
        return response.json().get("error") == "invalid_token"
    except ValueError:
        return False
