import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models

# New keys look like `hub_<43 url-safe characters>`; the first PREFIX_LENGTH
# characters are stored in clear so the row can be found by index, the rest
# only as a SHA-256 digest. A slow password hash is not needed: the secret is
# 256 random bits, not something a person chose (GitHub and Stripe do the same).
KEY_PREFIX = "hub_"
PREFIX_LENGTH = 12


def token_digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


def new_token_key():
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiToken(models.Model):
    """An API token: only its prefix and digest are stored; the key is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"], name="apitoken_user_idx")]

    def __str__(self):
        return f"{self.name} ({self.prefix}…) for {self.user}"

    def matches(self, key):
        return hmac.compare_digest(self.digest, token_digest(key))
