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
"""

import contextlib
import json
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from .. import localstate
from ..alerts import alert_raise
from ..errors import DomainError, ProviderUnavailable
from ..models import Alert, Connection, OAuthState
from ..redis import get_client, key
from ..registry import require
from ..states import transition
from . import config as oauth_config
from .providers import InvalidGrant

logger = logging.getLogger(__name__)

# How long a refresh may hold the lock (longer than a worker's token-request timeout), and how long others wait.
LOCK_SECONDS = 60
LOCK_WAIT_SECONDS = 45


def redirect_uri(cfg):
    """Where the provider sends the user back: always APP_URL (registered at the provider), never the Host header."""
    return settings.APP_URL + reverse("oauth:callback", kwargs={"provider": cfg.key})


# --- Starting an authorization ------------------------------------------------


def _owned(owner, connection_id):
    try:
        return Connection.objects.get(pk=connection_id, owner=owner)
    except (Connection.DoesNotExist, ValueError, TypeError):
        raise DomainError(
            404, "connection_not_found", "No such connection; list yours at /api/v1/connections/."
        ) from None


def authorization_start(*, owner, provider_key, capabilities, connection_id=None):
    """A new single-use state for `owner` and the provider's authorization URL for these capabilities.

    With `connection_id` (incremental authorization) the request adds to that
    connection's capabilities and names its account; Google is asked for
    offline access and consent only when no refresh token is held yet.
    """
    cfg = oauth_config.get(provider_key)
    require(cfg.provider)
    unknown = [c for c in capabilities if c not in cfg.capabilities]
    if not capabilities or unknown:
        raise DomainError(
            400,
            "invalid_capabilities",
            f"Ask for one or more of {', '.join(cfg.capabilities)} for {cfg.label}"
            + (f"; unknown: {', '.join(unknown)}." if unknown else "."),
        )
    connection = None
    if connection_id is not None:
        connection = _owned(owner, connection_id)
        if connection.provider != cfg.provider:
            raise DomainError(
                400, "connection_provider_mismatch", f"Connection {connection.pk} is not a {cfg.label} one."
            )
        capabilities = list(dict.fromkeys([*connection.capabilities, *capabilities]))
    scopes = cfg.scopes_for(capabilities)
    state = OAuthState(
        state=secrets.token_urlsafe(32),
        owner=owner,
        provider=cfg.provider,
        capabilities=list(capabilities),
        scopes=scopes,
        # RFC 7636: 43-128 characters; 64 random bytes base64url-encoded is 86.
        code_verifier=secrets.token_urlsafe(64),
        connection=connection,
        expires_at=timezone.now() + timedelta(seconds=settings.OAUTH_STATE_TTL_SECONDS),
    )
    url, flow = cfg.client().authorization_url(
        cfg,
        state=state.state,
        code_verifier=state.code_verifier,
        scopes=scopes,
        redirect_uri=redirect_uri(cfg),
        offline=connection is None or not connection.refresh_token,
        login_hint=connection.account if connection else "",
    )
    if flow is not None:
        state.flow = json.dumps(flow)
        state.code_verifier = flow.get("code_verifier", "")
    state.save()
    return url


# --- The callback ----------------------------------------------------------------


def _bad_state(detail):
    return DomainError(400, "invalid_state", detail + " Start again with POST /api/v1/connections/<provider>/start/.")


def _claim_state(*, owner, cfg, value):
    """Mark the state used (one conditional UPDATE, so a replay loses) after checking owner, provider and age."""
    if not value:
        raise _bad_state("The callback has no state parameter.")
    state = OAuthState.objects.filter(state=value).first()
    # Another user's state reads exactly like an unknown one: it must not tell the caller that it exists.
    if state is None or state.owner_id != owner.pk:
        raise _bad_state("This authorization state is unknown or belongs to another session.")
    if state.provider != cfg.provider:
        raise _bad_state(f"This authorization state was not started for {cfg.label}.")
    now = timezone.now()
    if state.used_at is not None:
        raise _bad_state("This authorization state was already used.")
    if state.expires_at <= now:
        raise _bad_state("This authorization state expired (they last 10 minutes).")
    if not OAuthState.objects.filter(pk=state.pk, used_at__isnull=True).update(used_at=now):
        raise _bad_state("This authorization state was already used.")
    return state


def authorization_complete(*, owner, provider_key, params):
    """Check the state, exchange the code (PKCE), store or update the one Connection for (owner, provider, account)."""
    cfg = oauth_config.get(provider_key)
    params = {k: (v if isinstance(v, str) else str(v)) for k, v in params.items()}
    state = _claim_state(owner=owner, cfg=cfg, value=params.get("state", ""))
    if params.get("error"):
        description = params.get("error_description") or params["error"]
        raise DomainError(
            400,
            "authorization_denied",
            f"{cfg.label} did not authorize the connection: {description[:300]}",
            provider_error=params["error"][:64],
        )
    code = params.get("code", "")
    if not code:
        raise DomainError(400, "missing_code", "The callback has no authorization code.")
    require(cfg.provider)
    try:
        tokens = cfg.client().exchange(
            cfg, code=code, params=params, state=state, redirect_uri=redirect_uri(cfg), owner=owner
        )
    except InvalidGrant as exc:
        # At the callback, invalid_grant means this code is stale or was already redeemed, not a broken connection.
        raise DomainError(
            400, "authorization_failed", f"{cfg.label} refused the authorization code ({exc.message}); start again."
        ) from exc
    if not tokens.access_token:
        raise DomainError(502, "provider_error", f"{cfg.label} answered without an access token.")
    account = tokens.account or (state.connection.account if state.connection else "")
    if not account:
        raise DomainError(502, "provider_error", f"{cfg.label} did not say which account was authorized.")
    granted = tokens.scopes if tokens.scopes is not None else list(state.scopes)
    with transaction.atomic():
        conn = (
            Connection.objects.select_for_update().filter(owner=owner, provider=cfg.provider, account=account).first()
        )
        if conn is None:
            conn = Connection(owner=owner, provider=cfg.provider, account=account)
            capabilities = list(state.capabilities)
        else:
            capabilities = list(dict.fromkeys([*conn.capabilities, *state.capabilities]))
        conn.account_id = tokens.account_id or conn.account_id
        conn.capabilities = capabilities
        conn.requested_scopes = list(dict.fromkeys([*conn.requested_scopes, *state.scopes]))
        conn.scopes = [cfg.normalise_scope(s) for s in granted]
        conn.access_token = tokens.access_token
        # Google sends no refresh token when it already issued one (no prompt=consent): keep the one we hold.
        if tokens.refresh_token:
            conn.refresh_token = tokens.refresh_token
        conn.expires_at = tokens.expires_at
        conn.last_refreshed_at = timezone.now()
        if conn.pk is None or conn.status == Connection.Status.ACTIVE:
            conn.status_detail = ""  # a new connection starts active; an active one stays so
            conn.save()
        else:
            # needs_reauth / expired / error / revoked -> active is a declared move of Connection's
            # machine; the row is locked, so the state just read is the one the UPDATE is guarded by.
            conn.save()
            transition(Connection, conn.pk, Connection.Status.ACTIVE, frm=conn.status, strict=True, status_detail="")
            conn.status, conn.status_detail = Connection.Status.ACTIVE, ""
    _resolve_reauth_alert(conn)
    return conn


# --- Reading connections ------------------------------------------------------


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


def needs_reauth_error(conn):
    cfg = oauth_config.by_registry_name(conn.provider)
    try:
        url = authorization_start(
            owner=conn.owner, provider_key=cfg.key, capabilities=conn.capabilities or [], connection_id=conn.pk
        )
    except DomainError:
        url = None
    return DomainError(
        409,
        "connection_needs_reauth",
        f"{cfg.label} no longer accepts this connection's authorization ({conn.status_detail or 'refused'}); "
        "open authorization_url to connect it again.",
        connection=conn.pk,
        authorization_url=url,
    )


# --- Refresh ---------------------------------------------------------------------


@contextlib.contextmanager
def _refresh_lock(connection_id):
    """One refresh per connection at a time across every process (Redis), or across this machine (a file lock)."""
    client = get_client()
    if client is None:
        with localstate.locked(f"oauth-refresh:{connection_id}"):
            yield
        return
    lock = client.lock(key("oauth-refresh", connection_id), timeout=LOCK_SECONDS, blocking_timeout=LOCK_WAIT_SECONDS)
    if not lock.acquire():
        raise ProviderUnavailable("oauth", "another worker is refreshing this connection", retry_after=1)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # expired under us: the next refresh re-reads the row anyway
            lock.release()


def _due(conn, margin_seconds):
    return conn.expires_at is None or conn.expires_at - timezone.now() < timedelta(seconds=margin_seconds)


def connection_refresh(*, connection_id, margin_seconds=None, force=False, raise_on_reauth=True):
    """Refresh the access token if fewer than `margin_seconds` remain (or `force`); returns the fresh row."""
    margin = settings.OAUTH_REFRESH_MARGIN_SECONDS if margin_seconds is None else margin_seconds
    with _refresh_lock(connection_id):
        # Re-read under the lock: the worker that held it before may have refreshed already.
        conn = Connection.objects.select_related("owner").get(pk=connection_id)
        if conn.status == Connection.Status.NEEDS_REAUTH:
            if raise_on_reauth:
                raise needs_reauth_error(conn)
            return conn
        if not force and not _due(conn, margin):
            return conn
        cfg = oauth_config.by_registry_name(conn.provider)
        if not conn.refresh_token:
            _mark_needs_reauth(conn, "no refresh token is held")
            if raise_on_reauth:
                raise needs_reauth_error(conn)
            return conn
        try:
            tokens = cfg.client().refresh(cfg, connection=conn)
        except InvalidGrant as exc:
            _mark_needs_reauth(conn, exc.message)
            if raise_on_reauth:
                raise needs_reauth_error(conn) from exc
            return conn
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
        conn.save(update_fields=fields)
        return conn


def _mark_needs_reauth(conn, reason):
    moved = transition(Connection, conn.pk, Connection.Status.NEEDS_REAUTH, status_detail=str(reason)[:500])
    conn.status = Connection.Status.NEEDS_REAUTH
    conn.status_detail = str(reason)[:500]
    if moved:
        alert_raise(
            kind=Alert.Kind.CONNECTION_REAUTH,
            provider=conn.provider,
            message=f"Connection {conn.pk} ({conn.provider}, user {conn.owner_id}) needs authorizing again: {reason}"[
                :1000
            ],
            dedupe_key=f"connection_reauth:{conn.pk}",
        )
        logger.warning("connection needs reauthorization", extra={"connection": conn.pk, "provider": conn.provider})


def _resolve_reauth_alert(conn):
    from ..alerts import alert_resolve

    for alert in Alert.objects.filter(dedupe_key=f"connection_reauth:{conn.pk}", resolved_at__isnull=True):
        alert_resolve(alert=alert)


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


def connections_refresh_due():
    """Beat: queue a refresh for every active connection whose token expires within OAUTH_REFRESH_AHEAD_SECONDS."""
    from ..task_base import enqueue_on_commit
    from .tasks import oauth_connection_refresh

    horizon = timezone.now() + timedelta(seconds=settings.OAUTH_REFRESH_AHEAD_SECONDS)
    ids = list(
        Connection.objects.filter(status=Connection.Status.ACTIVE, expires_at__lt=horizon).values_list("pk", flat=True)
    )
    for pk in ids:
        enqueue_on_commit(oauth_connection_refresh, pk)
    return len(ids)


def oauth_states_purge():
    """Forget authorization states an hour past their expiry."""
    return OAuthState.objects.filter(expires_at__lt=timezone.now() - timedelta(hours=1)).delete()[0]


# --- Deleting ----------------------------------------------------------------------


def connection_delete(*, owner, connection_id):
    """Revoke at the provider where it can be revoked, then delete the row and its tokens.

    Returns {"revoked": bool, "detail": ...}. Google's revoke endpoint ends the
    grant; Microsoft has no endpoint that revokes a refresh token, so the hub
    deletes its copy and says so.
    """
    conn = _owned(owner, connection_id)
    cfg = oauth_config.by_registry_name(conn.provider)
    revoked = False
    if conn.refresh_token or conn.access_token:
        require(cfg.provider)
        for name, hook in list(oauth_config.DISCONNECT_HOOKS.items()):
            try:
                hook(conn)
            except Exception:  # noqa: BLE001 - provider-side leftovers expire by themselves; the delete goes on
                logger.exception("disconnect hook failed", extra={"hook": name, "connection": conn.pk})
        revoked = cfg.client().revoke(cfg, connection=conn)
    conn.delete()
    if revoked:
        detail = f"Revoked at {cfg.label} and deleted."
    else:
        detail = (
            f"{cfg.label} has no endpoint to revoke a refresh token; the hub deleted its tokens. "
            "To withdraw the app's access entirely, remove it from the account's app permissions at the provider."
        )
    return {"revoked": revoked, "detail": detail}
