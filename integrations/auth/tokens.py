"""API tokens: create (the key is returned once), authenticate by prefix + digest, list, revoke.

Only the first characters of a key (its prefix) and a SHA-256 digest of the
whole key are stored, so a database dump or the admin shows no usable token.

A token found once is kept in the shared cache under its digest for
TOKEN_CACHE_SECONDS, so an API request reads no database row to authenticate.
Deleting a token (revoked by its owner or staff, erased with its user) or
saving its user (deactivated, staff rights changed) forgets it at once in
every process (signals, integrations.signals); its expiry is checked on every
request. Only a bulk UPDATE of users, which sends no signal, waits out the
cache time.

Without Redis (`make run`) Django's cache is each process's own memory, and a
token deleted elsewhere (an erasure runs in the worker) would stay usable in
the web process for TOKEN_CACHE_SECONDS: there every request reads the database.
"""

import contextvars
import datetime as dt

from django.conf import settings
from django.utils import timezone

from integrations.errors import DomainError
from integrations.models.tokens import PREFIX_LENGTH, ApiToken, new_token_key, token_digest
from integrations.redis import cache_best_effort as _cache
from integrations.redis import get_client

# last_used_at is written at most this often per token, so an API client does
# not turn every read into a database write.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)
MAX_KEY_LENGTH = 200
TOKEN_CACHE_SECONDS = 60  # without Redis a request authenticates from the database (see above)
# What a 401 asks for (ApiTokenAuthentication.authenticate_header: token authentication comes first).
TOKEN_CHALLENGE = {"WWW-Authenticate": "Token"}


def _cache_key(digest):
    return f"auth:token:{digest}"


def token_create(*, user, name="", expires_in_days=None):
    """A new token for `user`; returns (row, key). The key is never stored and cannot be shown again."""
    days = settings.API_TOKEN_TTL_DAYS if expires_in_days is None else expires_in_days
    key = new_token_key()
    token = ApiToken.objects.create(
        user=user,
        name=name or "API token",
        prefix=key[:PREFIX_LENGTH],
        digest=token_digest(key),
        expires_at=timezone.now() + dt.timedelta(days=days) if days else None,
    )
    return token, key


# Whose each token digest is, as this process last authenticated it (a token's user never changes): lets a view
# read cache keys of the user in the token's own round trip (token_authenticate's `along`).
_owners = {}
_OWNERS_KEPT = 10_000
# What those keys held, read with the token in this context: {cache key: value or None (absent)}.
_read_along = contextvars.ContextVar("token_read_along", default=None)
NOT_READ = object()


def token_refused():
    """The 401 for a token that is unknown, malformed or no longer valid (its user deactivated); see signed_out."""
    return DomainError(
        401,
        "authentication_failed",
        "The token is invalid; get one from POST /api/v1/auth/token/.",
        headers=TOKEN_CHALLENGE,
    )


def signed_out(*, by_token=True):
    """The 401 a request of a user whose erasure has started gets where it reaches their data (ai.usage,
    ai.services.booking): what it would get a moment later, the erasure having deleted the user's tokens
    (token_refused) or, for a browser's session (`by_token` False), ended their sessions: a request with no
    credentials, 401 `not_authenticated` with the token challenge, as IsAuthenticated answers it."""
    if by_token:
        return token_refused()
    from integrations.api.errors import default_detail  # DRF's views, which import this module's authentication

    return DomainError(401, "not_authenticated", default_detail("not_authenticated"), headers=TOKEN_CHALLENGE)


def token_authenticate(*, key, along=None):
    """The live token for `key` (its user loaded), or a DomainError 401 (unknown, malformed or expired).

    `along(user_id)`: cache keys of the token's user that the caller reads next (an AI completion: the user's
    budget override). When this process knows whose the token is, they are read in the token's own round trip
    (one MGET instead of two GETs: ~0.2 ms of a completion's request hop, bench/profile_ai_request.py), and
    `read_along(key)` then answers for each, once. The token is read as before, so revoking or deactivating
    still acts at once."""
    # Nothing an earlier request read along (and never used) answers for this one: under a sync server a
    # thread's context outlives its request.
    _read_along.set(None)
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise token_refused()
    if get_client() is None:
        token = _token_found(key)  # no cache every process shares
    else:
        digest = token_digest(key)
        owner = _owners.get(digest) if along is not None else None
        if owner is None:
            token = _cache("get", _cache_key(digest))
        else:
            extra = list(along(owner))
            found = _cache("get_many", [_cache_key(digest), *extra])
            token = None if found is None else found.get(_cache_key(digest))
            if token is not None and token.user_id == owner:
                _read_along.set({name: found.get(name) for name in extra})
        if token is None:
            token = _token_found(key)
            _cache("set", _cache_key(digest), token, TOKEN_CACHE_SECONDS)
        if along is not None and owner is None:
            if len(_owners) >= _OWNERS_KEPT:
                _owners.clear()
            _owners[digest] = token.user_id
    if token.expires_at is not None and token.expires_at <= timezone.now():
        raise DomainError(401, "token_expired", "The token has expired; get a new one from POST /api/v1/auth/token/.")
    return token


def read_along(name):
    """What cache key `name` held when it was read with this request's token (None: absent), once; else NOT_READ."""
    values = _read_along.get()
    if values is None or name not in values:
        return NOT_READ
    return values.pop(name)


def _token_found(key):
    # Found by its clear prefix, then the digest compared in constant time.
    candidates = ApiToken.objects.select_related("user").filter(prefix=key[:PREFIX_LENGTH])
    token = next((t for t in candidates if t.matches(key)), None)
    if token is None or not token.user.is_active:
        raise token_refused()
    now = timezone.now()
    # Written when the token is read from the database: at most once per LAST_USED_RESOLUTION
    # (the cache time is no longer), so an API client does not turn every read into a write.
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def tokens_forget(sender, instance, **kwargs):
    """Signal receiver: a deleted or edited token, or a saved user's tokens, leave the cache at once."""
    if isinstance(instance, ApiToken):
        digests = [instance.digest]
    else:
        digests = list(ApiToken.objects.filter(user_id=instance.pk).values_list("digest", flat=True))
    if digests:
        _cache("delete_many", [_cache_key(digest) for digest in digests])


def token_list_for_user(*, user):
    return ApiToken.objects.filter(user=user)


def token_revoke(*, user, token_id):
    """Delete one of the user's own tokens; another user's token is 404 like any other object."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        raise DomainError(404, "not_found", "No such token among yours.")
