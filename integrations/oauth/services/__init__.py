"""Connections: authorize, store, refresh, revoke; and the one way other apps get a usable connection.

    conn = connection_for(owner=user, connection_id=pk, capability="mail", need=[GMAIL_SEND])
    token = access_token(connection=conn)          # refreshed first when < OAUTH_REFRESH_MARGIN_SECONDS remain

Refresh is serialised per connection across every worker (a Redis lock, or a
file lock without Redis) and re-reads the row once it holds the lock, so two
workers never both spend a refresh token: providers that rotate refresh tokens
(Microsoft) invalidate the old one on first use, and a second use can revoke
the whole grant. A refused grant (invalid_grant) moves the connection to
needs_reauth, raises one alert, and callers get 409 connection_needs_reauth
with an authorization URL that repairs it.

authorize.py    authorization_start, authorization_complete, needs_reauth_error, redirect_uri, oauth_states_purge
connections.py  connection_for, missing_scopes, connection_delete, connections_sharing_account
refresh.py      connection_refresh, access_token, access_token_refused, connections_refresh_due
"""

from .authorize import _owned as _owned  # views.py reads it as services._owned
from .authorize import authorization_complete, authorization_start, needs_reauth_error, oauth_states_purge, redirect_uri
from .connections import connection_delete, connection_for, connections_sharing_account, missing_scopes
from .refresh import (
    LOCK_SECONDS,
    LOCK_WAIT_SECONDS,
    access_token,
    access_token_refused,
    connection_refresh,
    connections_refresh_due,
)

__all__ = [
    "authorization_complete",
    "authorization_start",
    "needs_reauth_error",
    "oauth_states_purge",
    "redirect_uri",
    "connection_delete",
    "connections_sharing_account",
    "connection_for",
    "missing_scopes",
    "LOCK_SECONDS",
    "LOCK_WAIT_SECONDS",
    "access_token",
    "access_token_refused",
    "connection_refresh",
    "connections_refresh_due",
]
