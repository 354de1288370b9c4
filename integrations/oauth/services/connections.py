"""The one way other apps get a usable connection (owned, the capability's scopes granted, not
waiting for reauthorization), and deleting one with its provider-side grant and disconnect hooks.
"""

import logging

from django.db.models import Q

from ...errors import DomainError
from ...models import Connection
from ...registry import get_provider
from .. import config as oauth_config
from .authorize import _owned, needs_reauth_error

logger = logging.getLogger(__name__)


def missing_scopes(conn, scopes):
    """Scopes of `scopes` the connection was not granted (each item a scope or a tuple of which one suffices)."""
    cfg = oauth_config.by_registry_name(conn.provider)
    granted = {cfg.normalise_scope(s) for s in conn.scopes}
    missing = []
    for item in scopes:
        options = item if isinstance(item, tuple | list) else (item,)
        if not any(cfg.normalise_scope(s) in granted for s in options):
            missing.append(options[0])
    return missing


def connection_for(*, owner, connection_id, capability, need=None):
    """The owner's connection, checked for use: the one entry point for mail, calendar and meeting code.

    404 connection_not_found: unknown, or another user's.
    403 missing_scope: the connection lacks the capability or one of `need`
        (scopes; a tuple means any one of them), naming the missing scopes.
    409 connection_needs_reauth: the user must authorize again (the body has the URL).
    """
    conn = _owned(owner, connection_id)
    cfg = oauth_config.by_registry_name(conn.provider)
    if capability not in cfg.capabilities:
        raise DomainError(403, "missing_capability", f"{cfg.label} connections have no {capability!r} capability.")
    needed = list(need) if need is not None else list(cfg.capabilities[capability])
    missing = missing_scopes(conn, needed)
    if capability not in conn.capabilities and not missing and need is None:
        missing = list(cfg.capabilities[capability])
    if missing:
        raise DomainError(
            403,
            "missing_scope",
            f"This {cfg.label} connection was not granted {', '.join(missing)}; authorize it again with the "
            f"{capability!r} capability (POST /api/v1/connections/{cfg.key}/start/ with its id).",
            missing_scopes=missing,
            capability=capability,
        )
    if conn.status == Connection.Status.NEEDS_REAUTH:
        raise needs_reauth_error(conn)
    if conn.status != Connection.Status.ACTIVE:
        raise DomainError(409, "connection_inactive", f"This connection is {conn.status}; authorize it again.")
    return conn


def connection_delete(*, owner, connection_id):
    """Revoke at the provider where it can be revoked, then delete the row and its tokens.

    Returns {"revoked": bool, "detail": ...}. Google's revoke endpoint ends the
    grant; Microsoft has no endpoint that revokes a refresh token, so the hub
    deletes its copy and says so. A grant another live connection shares is not
    revoked (see _grant_shared).
    """
    conn = _owned(owner, connection_id)
    cfg = oauth_config.by_registry_name(conn.provider)
    revoked, configured = False, not get_provider(cfg.provider).missing()
    shared = bool(cfg.revoke_url) and _grant_shared(conn)
    if conn.refresh_token or conn.access_token:
        for name, hook in list(oauth_config.DISCONNECT_HOOKS.items()):
            try:
                hook(conn)
            except Exception:  # noqa: BLE001 - provider-side leftovers expire by themselves; the delete goes on
                logger.exception("disconnect hook failed", extra={"hook": name, "connection": conn.pk})
        # A hub no longer set up for the provider cannot revoke there, but the owner can still take their tokens
        # out of it (a 503 here would keep them against the owner's will).
        revoked = configured and not shared and cfg.client().revoke(cfg, connection=conn)
    conn.delete()
    if revoked:
        detail = f"Revoked at {cfg.label} and deleted."
    else:
        if not configured:
            reason = f"The hub is not configured for {cfg.label} now, so nothing was revoked there"
        elif shared:
            reason = (
                f"Not revoked at {cfg.label}: another connection in the hub uses the same {cfg.label} account, and "
                f"revoking ends {cfg.label}'s grant for every one of them"
            )
        else:
            reason = f"{cfg.label} has no endpoint to revoke a refresh token"
        detail = (
            f"{reason}; the hub deleted its tokens. "
            "To withdraw the app's access entirely, remove it from the account's app permissions at the provider."
        )
    return {"revoked": revoked, "detail": detail}


def _grant_shared(conn):
    """Whether another active connection (any owner's) is to the same account at the provider.

    Google keeps one grant per account and client: revoking any token of it ends every token of it, so two hub
    users who connected the same Google account (a shared mailbox, one person with two hub accounts) share one
    grant, and one of them disconnecting (or being erased) left the other's connection refused at its next
    refresh. Such a disconnect deletes this connection's tokens only; the last one to go revokes.
    """
    return connections_sharing_account(conn).exists()


def connections_sharing_account(conn):
    """The other active connections (any owner's) to the same account at the provider as `conn`.

    What a disconnect must leave alone at the provider: the grant (_grant_shared), and what the provider keeps
    per account rather than per token (Gmail's one watch per mailbox, which the mail app's hook would stop).
    """
    same = Q(account=conn.account)
    if conn.account_id:
        same = Q(account_id=conn.account_id) | Q(account=conn.account, account_id="")
    return Connection.objects.filter(same, provider=conn.provider, status=Connection.Status.ACTIVE).exclude(pk=conn.pk)
