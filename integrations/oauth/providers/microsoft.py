"""Microsoft identity platform through msal (authorization code flow with PKCE, refresh, no revocation).

- msal builds the authorization request itself (its flow record carries the
  PKCE verifier, the state and a nonce); the hub keeps that record encrypted on
  the OAuthState row and hands it back at the callback.
- One ConfidentialClientApplication per call with its own empty token cache:
  tokens live only in the Connection row, never in a process-wide msal cache
  shared between users. The OpenID discovery document is cached per process
  (msal's http_cache), so only the first call of a process fetches it.
- msal never retries a token request; every request runs in one attempt of
  `MICROSOFT_OAUTH`, which translates msal's refusals once (its ValueError, and
  the error dict it answers with instead of raising).
- Microsoft rotates refresh tokens: every refresh answers with a new one,
  which the caller stores at once.
- There is no endpoint that revokes a single refresh token (only an admin can
  revoke all of a user's sessions), so revoke() says False and the hub deletes
  its copy.
"""

import json
import warnings

import msal
from django.conf import settings

from integrations import gateway
from integrations.errors import ProviderUnavailable

from . import TokenEndpointAdapter, TokenSet, expiry, recording, refusal, scope_list

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
# msal adds these to every request and refuses them in `scopes`.
RESERVED = frozenset({"openid", "profile", "offline_access"})

_http_caches = {}


GRAPH_APP_SCOPE = "https://graph.microsoft.com/.default"


class MsalRefusal(Exception):
    """msal answered an error dict (`{"error": ..., "error_description": ...}`) instead of raising."""

    def __init__(self, result):
        super().__init__(result.get("error", ""))
        self.result = result


class MicrosoftOAuthAdapter(TokenEndpointAdapter):
    provider = "microsoft_oauth"
    # msal raises ValueError for a discovery failure and for a callback that does not match the flow.
    sdk_errors = (MsalRefusal, ValueError)

    def translate(self, exc):
        response = exc.token_response
        if isinstance(exc, MsalRefusal):
            return refusal(
                self.provider,
                response,
                error=exc.result["error"],
                description=exc.result.get("error_description", ""),
            )
        if response is not None and response.status_code >= 400:
            return refusal(self.provider, response, description=str(exc)[:200])
        return None  # not the provider's refusal (a callback that does not match the flow): left as it is


MICROSOFT_OAUTH = MicrosoftOAuthAdapter()


def _authority(tenant=None):
    return f"{settings.MICROSOFT_AUTHORITY_HOST.rstrip('/')}/{tenant or settings.MICROSOFT_TENANT}"


class MicrosoftOAuth:
    adapter = MICROSOFT_OAUTH

    def app(self, config, session, tenant=None):
        authority = _authority(tenant)
        cache = _http_caches.setdefault(authority, {})
        return msal.ConfidentialClientApplication(
            config.client_id,
            client_credential=config.client_secret,
            authority=authority,
            http_client=session,
            http_cache=cache,
            # Instance discovery asks login.microsoftonline.com whether the host is a Microsoft one:
            # needed only for other hosts, and a deployment that sets MICROSOFT_AUTHORITY_HOST knows.
            instance_discovery=None
            if settings.MICROSOFT_AUTHORITY_HOST.rstrip("/") == DEFAULT_AUTHORITY_HOST
            else False,
            timeout=gateway.timeout_for(config.provider),
            token_cache=msal.TokenCache(),
        )

    def _run(self, config, operation, owner, fn, tenant=None):
        """fn(app) inside one gateway attempt; the app is built inside it, as building it may fetch discovery."""
        session = recording()
        with self.adapter.for_provider(config.provider).attempt(operation, owner=owner, session=session):
            result = fn(self.app(config, session, tenant))
            if not isinstance(result, dict):
                raise ProviderUnavailable(config.provider, "no answer from the token endpoint")
            if "error" in result:
                raise MsalRefusal(result)
        return result

    def _scopes(self, scopes):
        return [s for s in scopes if s not in RESERVED]

    def authorization_url(self, config, *, state, code_verifier, scopes, redirect_uri, offline, login_hint):
        session = recording()
        authority = _authority()
        if not _http_caches.get(authority):
            # The first use in this process fetches the discovery document: log it as a call.
            with self.adapter.for_provider(config.provider).attempt("discovery", session=session):
                app = self.app(config, session)
        else:
            app = self.app(config, session)
        with warnings.catch_warnings():
            # msal recommends form_post; the callback needs the query string, because a browser does not send
            # the SameSite=Lax session cookie with a cross-site POST, and the state is bound to that session.
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            flow = app.initiate_auth_code_flow(
                self._scopes(scopes),
                redirect_uri=redirect_uri,
                state=state,
                login_hint=login_hint or None,
                response_mode="query",
                # A first authorization asks the user to pick the account.
                prompt="select_account" if offline else None,
            )
        return flow["auth_uri"], flow

    def exchange(self, config, *, code, params, state, redirect_uri, owner):
        flow = json.loads(state.flow)
        auth_response = {k: v for k, v in params.items() if k in {"code", "state", "client_info", "session_state"}}
        result = self._run(
            config,
            "token.exchange",
            owner,
            lambda app: app.acquire_token_by_auth_code_flow(flow, auth_response, scopes=self._scopes(state.scopes)),
        )
        return self.token_set(config, result)

    def refresh(self, config, *, connection):
        scopes = self._scopes(connection.scopes or connection.requested_scopes)
        result = self._run(
            config,
            "token.refresh",
            connection.owner_id,
            lambda app: app.acquire_token_by_refresh_token(connection.refresh_token, scopes=scopes),
        )
        return self.token_set(config, result)

    def token_set(self, config, result):
        claims = result.get("id_token_claims") or {}
        oid, tid = claims.get("oid"), claims.get("tid")
        return TokenSet(
            access_token=result.get("access_token") or "",
            refresh_token=result.get("refresh_token") or "",
            expires_at=expiry(result.get("expires_in")),
            scopes=[config.normalise_scope(s) for s in scope_list(result.get("scope")) or []] or None,
            account=claims.get("preferred_username") or claims.get("email") or "",
            account_id=f"{oid}.{tid}" if oid and tid else (claims.get("sub") or ""),
            claims=claims,
        )

    def revoke(self, config, *, connection):
        return False

    def app_token(self, config, *, tenant):
        """A token of the hub's own app in `tenant` (client credentials), for the application permissions that
        tenant's admin consented to. A named tenant only: "common" or "organizations" cannot issue one."""
        result = self._run(
            config,
            "token.app_only",
            None,
            lambda app: app.acquire_token_for_client(scopes=[GRAPH_APP_SCOPE]),
            tenant=tenant,
        )
        return TokenSet(access_token=result.get("access_token") or "", expires_at=expiry(result.get("expires_in")))
