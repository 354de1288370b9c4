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
        EXPIRED = "expired"
        REVOKED = "revoked"
        ERROR = "error"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="connections")
    provider = models.CharField(max_length=32, validators=[validate_provider_name])
    account = models.CharField(max_length=255, help_text="The account at the provider, e.g. the mailbox address.")
    scopes = models.JSONField(default=list, blank=True)
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["owner_id", "provider", "account"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "provider", "account"], name="connection_unique_owner_account"),
        ]

    def __str__(self):
        return f"{self.provider}:{self.account} ({self.status})"
