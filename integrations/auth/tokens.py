"""API tokens: create (the key is returned once), authenticate by prefix + digest, list, revoke.

Only the first characters of a key (its prefix) and a SHA-256 digest of the
whole key are stored, so a database dump or the admin shows no usable token.
"""

import datetime as dt

from django.conf import settings
from django.utils import timezone

from integrations.errors import DomainError
from integrations.models.tokens import PREFIX_LENGTH, ApiToken, new_token_key, token_digest

# last_used_at is written at most this often per token, so an API client does
# not turn every read into a database write.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)
MAX_KEY_LENGTH = 200


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


def token_authenticate(*, key):
    """The live token for `key`, or a DomainError 401 (unknown, malformed or expired)."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise DomainError(401, "authentication_failed", "The token is invalid; get one from POST /api/v1/auth/token/.")
    # Found by its clear prefix, then the digest compared in constant time.
    candidates = ApiToken.objects.select_related("user").filter(prefix=key[:PREFIX_LENGTH])
    token = next((t for t in candidates if t.matches(key)), None)
    if token is None or not token.user.is_active:
        raise DomainError(401, "authentication_failed", "The token is invalid; get one from POST /api/v1/auth/token/.")
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise DomainError(401, "token_expired", "The token has expired; get a new one from POST /api/v1/auth/token/.")
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_list_for_user(*, user):
    return ApiToken.objects.filter(user=user)


def token_revoke(*, user, token_id):
    """Delete one of the user's own tokens; another user's token is 404 like any other object."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        raise DomainError(404, "not_found", "No such token among yours.")
