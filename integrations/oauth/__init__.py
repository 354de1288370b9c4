"""OAuth connections: the authorization flow, encrypted tokens that refresh themselves, revocation.

What other apps use (mail, calendars, meetings):

    from integrations import oauth

    conn = oauth.connection_for(owner=request.user, connection_id=pk, capability="mail", need=[...scopes])
        # 404 connection_not_found (unknown or another user's), 403 missing_scope (names them),
        # 409 connection_needs_reauth (with authorization_url)
    token = oauth.access_token(connection=conn)      # fresh: refreshed first if < 5 minutes remain
    creds = oauth.google_credentials(connection=conn)  # google.oauth2 Credentials for googleapiclient
    auth = oauth.bearer_auth(connection=conn)        # httpx.Auth for Microsoft Graph (or any bearer API)
        # both: a 401 to a token with time left refreshes it once and the request goes again

An app that holds provider-side state for a connection cleans it up before the tokens go:

    oauth.on_disconnect(fn)          # fn(connection), called by DELETE /api/v1/connections/{id}/
    oauth.on_reconnect(fn)           # fn(connection), after a broken connection was authorized again
    oauth.on_reauthorize(fn)         # fn(connection), after any consent of an existing connection, active or broken
    oauth.connections_sharing_account(connection=conn)
        # the other active connections to the same provider account: a hook leaves alone what the provider
        # keeps per account, not per token, while one of them remains (Gmail's one watch per mailbox)

A new provider registers its endpoints and scopes as data:

    oauth.register(oauth.OAuthProvider(key=..., provider=..., ...))   # see integrations/oauth/config.py
"""

from .config import OAuthProvider, get, on_disconnect, on_reauthorize, on_reconnect, register


def connection_for(**kwargs):
    from .services import connection_for as impl

    return impl(**kwargs)


def access_token(*, connection):
    from .services import access_token as impl

    return impl(connection=connection)


def google_credentials(*, connection):
    """An authorized google.oauth2.credentials.Credentials for googleapiclient, without a refresh token.

    A 401 from Google refreshes the token once through the hub (providers.google.HubCredentials)."""
    from .providers.google import google_credentials as impl
    from .services import access_token_refused

    return impl(
        access_token(connection=connection),
        scopes=connection.scopes,
        on_refused=lambda token: access_token_refused(connection=connection, token=token),
    )


def connections_sharing_account(*, connection):
    """The other active connections (any hub user's) to the same account at the provider, as a queryset."""
    from .services import connections_sharing_account as impl

    return impl(connection)


def bearer_auth(*, connection):
    """An httpx.Auth that sends the connection's fresh access token (refreshing it when due) on every request."""
    from .auth import BearerAuth

    return BearerAuth(connection)


__all__ = [
    "OAuthProvider",
    "access_token",
    "bearer_auth",
    "connection_for",
    "connections_sharing_account",
    "get",
    "google_credentials",
    "on_disconnect",
    "on_reauthorize",
    "on_reconnect",
    "register",
]
