"""The authorization-code flow: starting it (state and PKCE, the redirect URI from APP_URL), the
callback that claims the state once, stores the tokens and resolves a reauthorization alert, the 409
whose authorization URL repairs a refused connection, and purging stale states.
"""

import json
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from ...errors import DomainError
from ...models import Alert, Connection, OAuthState
from ...registry import require
from ...states import transition
from .. import config as oauth_config
from ..providers import InvalidGrant

logger = logging.getLogger(__name__)


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
    offline access and consent only when no usable refresh token is held
    (none yet, or the connection is not active: its refresh token was refused).
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
        # A refresh token the provider refused (needs_reauth and the like) is no refresh token: ask for a new one.
        offline=connection is None or not connection.refresh_token or connection.status != Connection.Status.ACTIVE,
        login_hint=connection.account if connection else "",
    )
    if flow is not None:
        state.flow = json.dumps(flow)
        state.code_verifier = flow.get("code_verifier", "")
    state.save()
    return url


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
        conn = _same_account(owner=owner, cfg=cfg, account=account, account_id=tokens.account_id)
        existed = conn is not None
        if conn is None:
            conn = Connection(owner=owner, provider=cfg.provider, account=account)
            capabilities = list(state.capabilities)
        else:
            capabilities = list(dict.fromkeys([*conn.capabilities, *state.capabilities]))
        conn.account_id = tokens.account_id or conn.account_id
        conn.requested_scopes = list(dict.fromkeys([*conn.requested_scopes, *state.scopes]))
        conn.scopes = [cfg.normalise_scope(s) for s in granted]
        conn.capabilities = _granted_capabilities(cfg, capabilities, conn.scopes)
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
            transaction.on_commit(lambda: _run_hooks(oauth_config.RECONNECT_HOOKS, conn, "reconnect"))
        if existed:
            # Also a re-consent of an active connection: what the provider refused for the owner's grant is retried.
            transaction.on_commit(lambda: _run_hooks(oauth_config.REAUTHORIZE_HOOKS, conn, "reauthorize"))
    _resolve_reauth_alert(conn)
    return conn


def _granted_capabilities(cfg, capabilities, scopes):
    """The capabilities asked for that the grant gives at least one scope of.

    A user can untick scopes on the consent screen. One unticked scope of a capability (Gmail's send) leaves the
    rest of it usable, and missing_scopes says what is missing; a capability none of whose scopes was granted is
    not the connection's, or the calendar list, availability and meetings pick the connection up and answer 403.
    """
    held = {cfg.normalise_scope(s) for s in scopes}
    return [c for c in capabilities if any(cfg.normalise_scope(s) in held for s in cfg.capabilities.get(c, ()))]


def _same_account(*, owner, cfg, account, account_id):
    """The owner's connection to this account at the provider (locked), or None: found by its stable id first.

    The address is only the account's current name: Microsoft's preferred_username changes when a mailbox is
    renamed, a Google account's email when its primary address does. OpenID Connect names the account by `sub`
    (Microsoft: oid and tid), so matching the address alone connected the same account a second time, with a
    grant of its own, both syncing its mail and calendars. A renamed account's connection takes the new address,
    unless another of the owner's connections already holds it.
    """
    rows = Connection.objects.select_for_update().filter(owner=owner, provider=cfg.provider).order_by("pk")
    if not account_id:
        return rows.filter(account=account).first()
    found = list(rows.filter(Q(account_id=account_id) | Q(account=account)))
    same = [c for c in found if c.account_id == account_id]
    if not same:
        return found[0] if found else None
    conn = next((c for c in same if c.account == account), same[0])
    if conn.account != account and not any(c.account == account for c in found):
        conn.account = account
    return conn


def _run_hooks(hooks, conn, kind):
    for name, hook in list(hooks.items()):
        try:
            hook(conn)
        except Exception:  # noqa: BLE001 - one app's catch-up must not fail the authorization that already happened
            logger.exception("%s hook failed", kind, extra={"hook": name, "connection": conn.pk})


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


def _resolve_reauth_alert(conn):
    from ...alerts import alert_resolve

    for alert in Alert.objects.filter(dedupe_key=f"connection_reauth:{conn.pk}", resolved_at__isnull=True):
        alert_resolve(alert=alert)


def oauth_states_purge():
    """Forget authorization states an hour past their expiry."""
    return OAuthState.objects.filter(expires_at__lt=timezone.now() - timedelta(hours=1)).delete()[0]
