from django.db import models

from integrations.fields import EncryptedTextField
from integrations.models import Connection


class Mailbox(models.Model):
    """What keeps the cache of one connection's mailbox in sync: push registration and the sync cursor."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="mailbox")
    # Gmail: the historyId the cache is in sync with; users.watch lapses after 7 days.
    history_id = models.CharField(max_length=64, blank=True)
    watch_expires_at = models.DateTimeField(null=True, blank=True)
    # Graph: the inbox delta link, and the change-notification subscription with its shared secret.
    delta_link = models.TextField(blank=True)
    subscription_id = models.CharField(max_length=128, blank=True, db_index=True)
    subscription_expires_at = models.DateTimeField(null=True, blank=True)
    client_state = EncryptedTextField(blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    full_sync_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"mailbox of connection {self.connection_id}"


class MailMessage(models.Model):
    """The cached headers of one message (bodies are fetched on demand): what the list endpoint reads when fresh."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="messages")
    external_id = models.CharField(max_length=255)
    thread_id = models.CharField(max_length=255, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    sender = models.JSONField(default=dict, blank=True)
    to = models.JSONField(default=list, blank=True)
    cc = models.JSONField(default=list, blank=True)
    snippet = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    labels = models.JSONField(default=list, blank=True)
    unread = models.BooleanField(default=False)
    starred = models.BooleanField(default=False)
    attachments = models.JSONField(default=list, blank=True)
    # The provider's own metadata payload, for staff.
    raw = models.JSONField(default=dict, blank=True)
    synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-sent_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "external_id"], name="mailmessage_unique_external_id")
        ]
        indexes = [models.Index(fields=["mailbox", "-sent_at"], name="mailmessage_recent")]

    def __str__(self):
        return f"{self.external_id}: {self.subject[:60]}"
