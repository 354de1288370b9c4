"""Google identity: google-auth-oauthlib's Flow for the authorization (PKCE S256), google-auth for the account.

Google-specific parameters: `access_type=offline` and `prompt=consent` only
when the hub holds no refresh token for the account yet (asking again makes
Google issue another one and counts against its 100-per-account limit), and
`include_granted_scopes=true` always, so an incremental authorization adds to
what the account already granted. `google_credentials()` hands mail, calendar
and Meet code an authorized `google.oauth2.credentials.Credentials` without a
refresh token: googleapiclient then cannot refresh on its own, outside the
hub's lock and call log; when Google answers 401 (a token revoked before its
expiry), google-auth-httplib2 asks them to refresh, and they ask the hub.
"""

import threading

from google.auth import jwt as google_jwt
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow

from integrations import gateway

from . import recording
from .oauth2 import OAuth2Adapter, StandardOAuth2


def _client_config(config):
    return {
        "web": {
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            "auth_uri": config.url("authorize"),
            "token_uri": config.url("token"),
        }
    }


class GoogleOAuthAdapter(OAuth2Adapter):
    """Google's token endpoint through google-auth-oauthlib (requests-oauthlib inside: oauthlib's errors)."""

    provider = "google_oauth"


GOOGLE_OAUTH = GoogleOAuthAdapter()


class GoogleOAuth(StandardOAuth2):
    adapter = GOOGLE_OAUTH

    def flow(self, config, *, scopes, redirect_uri, code_verifier, state=None):
        flow = Flow.from_client_config(
            _client_config(config),
            scopes=scopes,
            redirect_uri=redirect_uri,
            state=state,
            code_verifier=code_verifier,
            autogenerate_code_verifier=False,
        )
        recording(flow.oauth2session)
        return flow

    def authorization_url(self, config, *, state, code_verifier, scopes, redirect_uri, offline, login_hint):
        flow = self.flow(config, scopes=scopes, redirect_uri=redirect_uri, code_verifier=code_verifier)
        params = {"state": state, "include_granted_scopes": "true"}
        # Flow defaults to access_type=offline; say "online" when a refresh token is already held.
        params["access_type"] = "offline" if offline else "online"
        if offline:
            params["prompt"] = "consent"
        if login_hint:
            params["login_hint"] = login_hint
        url, _ = flow.authorization_url(**params)
        return url, None

    def exchange(self, config, *, code, params, state, redirect_uri, owner):
        flow = self.flow(
            config, scopes=state.scopes, redirect_uri=redirect_uri, code_verifier=state.code_verifier, state=state.state
        )
        token = self.fetch(
            config,
            flow.oauth2session,
            "token.exchange",
            owner,
            lambda: flow.fetch_token(code=code, timeout=gateway.timeout_for(config.provider)),
        )
        tokens = self.token_set(config, token)
        claims = _id_claims(token.get("id_token"))
        tokens.claims = claims
        tokens.account = claims.get("email") or ""
        tokens.account_id = claims.get("sub") or ""
        return tokens


def _id_claims(id_token):
    """The ID token's claims, read without checking its signature.

    It came straight from Google's token endpoint over TLS in answer to our own
    code exchange, which OpenID Connect Core 3.1.3.7 accepts in place of the
    signature check; it is only used to name the account.
    """
    if not id_token:
        return {}
    try:
        return google_jwt.decode(id_token, verify=False)
    except ValueError:
        return {}


class HubCredentials(Credentials):
    """Credentials that ask the hub for a new token when Google refuses theirs (google-auth-httplib2 calls
    refresh() on a 401 and sends the request again).

    `on_refused(token)` answers the new token (integrations.oauth.services.access_token_refused). Once per token:
    a token just obtained that Google refuses too is not refreshed again, and Google's 401 reaches the caller as
    that API's error. Only on the thread that built them: free/busy runs Google's SDK on a pool that never touches
    the database, so they refresh nothing there (free/busy refreshes on its event loop instead,
    scheduling.providers.freebusy.google_busy). Without a hook, google-auth raised RefreshError (no refresh token
    inside), an unclassified 500, for as long as the stored expiry said the token was good.
    """

    def __init__(self, token, *, scopes=None, on_refused=None):
        super().__init__(token=token, scopes=scopes)
        self._on_refused = on_refused
        self._thread = threading.get_ident()
        self._renewed = set()

    def refresh(self, request):
        token = self.token
        if self._on_refused is None or token in self._renewed or threading.get_ident() != self._thread:
            return
        self.token = self._on_refused(token)
        self._renewed.add(self.token)


def google_credentials(access_token, scopes=None, on_refused=None):
    """Authorized Credentials for googleapiclient: the hub's fresh access token, no refresh token (see module doc)."""
    return HubCredentials(access_token, scopes=scopes, on_refused=on_refused)
