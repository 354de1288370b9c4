from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from ..fields import EncryptedTextField


def validate_provider_name(value):
    from ..registry import PROVIDERS

    if value not in PROVIDERS:
        raise ValidationError(f"Unknown provider {value!r}; expected one of {', '.join(sorted(PROVIDERS))}.")


class Connection(models.Model):
    """A user's authorised account at a provider (OAuth tokens), encrypted at rest.

    Tokens are EncryptedTextField: never in the database in plain text, never
    shown in admin, never in __str__ or logs.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        # The provider refused the refresh token (invalid_grant, consent withdrawn): only the user can fix it.
        NEEDS_REAUTH = "needs_reauth"
        EXPIRED = "expired"
        REVOKED = "revoked"
        ERROR = "error"

    # integrations.states.transition: a new authorization revives any state; only a refresh refusal leaves active.
    TRANSITIONS = {
        Status.ACTIVE: {Status.NEEDS_REAUTH, Status.EXPIRED, Status.REVOKED, Status.ERROR},
        Status.NEEDS_REAUTH: {Status.ACTIVE, Status.REVOKED},
        Status.EXPIRED: {Status.ACTIVE, Status.NEEDS_REAUTH, Status.REVOKED},
        Status.ERROR: {Status.ACTIVE, Status.NEEDS_REAUTH, Status.REVOKED},
        Status.REVOKED: {Status.ACTIVE},
    }

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="connections")
    provider = models.CharField(max_length=32, validators=[validate_provider_name])
    account = models.CharField(max_length=255, help_text="The account at the provider, e.g. the mailbox address.")
    account_id = models.CharField(
        max_length=255, blank=True, help_text="The provider's stable id for the account (OpenID `sub` / `oid`)."
    )
    # What the user asked for (capabilities and the scopes they need) and what the provider granted, which can be less.
    capabilities = models.JSONField(default=list, blank=True)
    requested_scopes = models.JSONField(default=list, blank=True)
    scopes = models.JSONField(default=list, blank=True, help_text="The scopes granted, as the provider reported them.")
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_detail = models.CharField(max_length=500, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["owner_id", "provider", "account"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "provider", "account"], name="connection_unique_owner_account"),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="connection_refresh_due")]

    def __str__(self):
        return f"{self.provider}:{self.account} ({self.status})"


class OAuthState(models.Model):
    """One authorization in progress: the `state` we sent, bound to the user who started it.

    Single use (`used_at` is set by a conditional UPDATE before the code is
    exchanged), valid for OAUTH_STATE_TTL_SECONDS. The PKCE verifier and msal's
    flow record stay server-side, encrypted.
    """

    state = models.CharField(max_length=128, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=32, validators=[validate_provider_name])
    capabilities = models.JSONField(default=list)
    scopes = models.JSONField(default=list)
    code_verifier = EncryptedTextField(blank=True)
    flow = EncryptedTextField(blank=True, help_text="The provider library's own flow record (msal), as JSON.")
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="oauthstate_expires")]

    def __str__(self):
        return f"{self.provider} authorization for user {self.owner_id}"
