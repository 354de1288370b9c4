"""Refreshing tokens, serialised per connection across every worker (a Redis lock, or a file lock
without Redis) and re-reading the row once the lock is held; a refused grant moves the connection to
needs_reauth with one alert.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ... import locks
from ...alerts import alert_raise
from ...errors import DomainError
from ...models import Alert, Connection
from ...states import transition
from .. import config as oauth_config
from ..providers import InvalidGrant
from .authorize import needs_reauth_error

logger = logging.getLogger(__name__)

# How long a refresh may hold the lock (longer than a worker's token-request timeout), and how long others wait.
LOCK_SECONDS = 60
LOCK_WAIT_SECONDS = 45


def _refresh_lock(connection_id):
    """One refresh per connection at a time across every process (Redis), or across this machine (a file lock)."""
    return locks.held(
        "oauth-refresh",
        connection_id,
        seconds=LOCK_SECONDS,
        wait=LOCK_WAIT_SECONDS,
        provider="oauth",
        busy="another worker is refreshing this connection",
        retry_after=1,
    )


def _due(conn, margin_seconds):
    return conn.expires_at is None or conn.expires_at - timezone.now() < timedelta(seconds=margin_seconds)


def connection_refresh(*, connection_id, margin_seconds=None, force=False, raise_on_reauth=True, refused=None):
    """Refresh the access token if fewer than `margin_seconds` remain (or `force`); returns the fresh row.

    `refused`: the access token a provider API just answered 401 to; it is refreshed whatever its expiry says,
    unless the row holds another one by now (a refresh that ran meanwhile).
    """
    margin = settings.OAUTH_REFRESH_MARGIN_SECONDS if margin_seconds is None else margin_seconds
    with _refresh_lock(connection_id):
        # Re-read under the lock: the worker that held it before may have refreshed already.
        conn = Connection.objects.select_related("owner").filter(pk=connection_id).first()
        if conn is None:
            raise _gone()
        if conn.status == Connection.Status.NEEDS_REAUTH:
            if raise_on_reauth:
                raise needs_reauth_error(conn)
            return conn
        if refused is not None:
            if conn.access_token != refused:
                return conn
            force = True
        if not force and not _due(conn, margin):
            return conn
        cfg = oauth_config.by_registry_name(conn.provider)
        read = (conn.refresh_token, conn.last_refreshed_at)
        if not conn.refresh_token:
            return _refused(conn, read, "no refresh token is held", raise_on_reauth=raise_on_reauth)
        try:
            tokens = cfg.client().refresh(cfg, connection=conn)
        except InvalidGrant as exc:
            return _refused(conn, read, exc.message, raise_on_reauth=raise_on_reauth, cause=exc)
        conn.access_token = tokens.access_token
        fields = ["access_token", "expires_at", "last_refreshed_at", "updated_at"]
        if tokens.refresh_token and tokens.refresh_token != conn.refresh_token:
            conn.refresh_token = tokens.refresh_token  # rotated: the old one is dead from now on
            fields.append("refresh_token")
        if tokens.scopes is not None:
            conn.scopes = [cfg.normalise_scope(s) for s in tokens.scopes]
            fields.append("scopes")
        conn.expires_at = tokens.expires_at
        conn.last_refreshed_at = timezone.now()
        conn.updated_at = timezone.now()
        with transaction.atomic():
            current = _reauthorized(conn.pk, read)
            if current is not None:
                return current
            Connection.objects.filter(pk=conn.pk).update(**{f: getattr(conn, f) for f in fields})
        return conn


def _reauthorized(connection_id, read):
    """The row, when the owner authorized it again since this refresh read it (else None); locks it until commit.

    authorization_complete stores a new grant under the row's lock, not the refresh lock (the owner's browser
    does not wait for a worker's refresh), so the provider's answer about the refresh token this refresh spent
    can arrive after the new grant is stored. Stored, that answer put the old grant's token and scopes back
    (a capability just added was 403 again) or, refused, sent the connection just repaired to needs_reauth.
    `read` is (refresh token, last_refreshed_at) as this refresh read them: under the refresh lock only an
    authorization changes either (Google's incremental one keeps the refresh token), and then the new grant
    stands. The owner may also have disconnected while the provider answered: the row is gone, which is a 404,
    not a database error.
    """
    current = Connection.objects.select_for_update().filter(pk=connection_id).first()
    if current is None:
        raise _gone()
    return current if (current.refresh_token, current.last_refreshed_at) != read else None


def _refused(conn, read, reason, *, raise_on_reauth, cause=None):
    """needs_reauth for a refresh token the provider refused (or none held), unless a new grant replaced it."""
    with transaction.atomic():
        current = _reauthorized(conn.pk, read)
        if current is not None:
            return current
        moved = transition(Connection, conn.pk, Connection.Status.NEEDS_REAUTH, status_detail=str(reason)[:500])
    _mark_needs_reauth(conn, reason, moved=moved)
    if raise_on_reauth:
        raise needs_reauth_error(conn) from cause
    return conn


def _gone():
    return DomainError(
        404, "connection_not_found", "This connection was disconnected meanwhile; list yours at /api/v1/connections/."
    )


def _mark_needs_reauth(conn, reason, *, moved):
    conn.status = Connection.Status.NEEDS_REAUTH
    conn.status_detail = str(reason)[:500]
    if moved:
        # info: kept in admin, no channel paged. The user is told (409 with the way back) and one user's revoked
        # grant is theirs to fix; many at once page staff through the oauth_refresh threshold alert.
        alert_raise(
            kind=Alert.Kind.CONNECTION_REAUTH,
            severity=Alert.Severity.INFO,
            provider=conn.provider,
            message=f"Connection {conn.pk} ({conn.provider}, user {conn.owner_id}) needs authorizing again: {reason}"[
                :1000
            ],
            dedupe_key=f"connection_reauth:{conn.pk}",
        )
        logger.warning("connection needs reauthorization", extra={"connection": conn.pk, "provider": conn.provider})


def access_token(*, connection):
    """A usable access token for this connection: refreshed first when fewer than the margin's seconds remain."""
    conn = connection
    if _due(conn, settings.OAUTH_REFRESH_MARGIN_SECONDS):
        fresh = connection_refresh(connection_id=conn.pk)
        conn.access_token, conn.expires_at, conn.scopes = fresh.access_token, fresh.expires_at, fresh.scopes
        conn.refresh_token = fresh.refresh_token
    now = timezone.now()
    Connection.objects.filter(pk=conn.pk).update(last_used_at=now)
    conn.last_used_at = now
    return conn.access_token


def access_token_refused(*, connection, token):
    """A new access token for a connection whose provider API answered 401 to `token` before its expiry.

    The stored expiry is only what the provider said at issue: a token can die sooner (the user changed their
    password or signed out everywhere, an admin revoked sessions, Microsoft's continuous access evaluation).
    Until the expiry passed, every call failed with the provider's 401 and nothing refreshed it. One refresh
    (or the token another caller already refreshed to), for the caller to send its request once more; a
    refused grant is needs_reauth and 409, as for any refresh.
    """
    fresh = connection_refresh(connection_id=connection.pk, refused=token)
    connection.access_token, connection.expires_at, connection.scopes = (
        fresh.access_token,
        fresh.expires_at,
        fresh.scopes,
    )
    connection.refresh_token = fresh.refresh_token
    return connection.access_token


def connections_refresh_due():
    """Beat: queue a refresh for every active connection whose token expires within OAUTH_REFRESH_AHEAD_SECONDS."""
    from ...task_base import enqueue_on_commit
    from ..tasks import oauth_connection_refresh

    horizon = timezone.now() + timedelta(seconds=settings.OAUTH_REFRESH_AHEAD_SECONDS)
    ids = list(
        Connection.objects.filter(status=Connection.Status.ACTIVE, expires_at__lt=horizon).values_list("pk", flat=True)
    )
    for pk in ids:
        enqueue_on_commit(oauth_connection_refresh, pk)
    return len(ids)
