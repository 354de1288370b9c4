from django.db import models

from integrations.fields import EncryptedTextField
from integrations.models import Connection
from messaging.models import SendDoubt


class Mailbox(models.Model):
    """What keeps the cache of one connection's mailbox in sync: push registration and the sync cursor."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="mailbox")
    # Gmail: the historyId the cache is in sync with; users.watch lapses after 7 days.
    history_id = models.CharField(max_length=64, blank=True)
    watch_expires_at = models.DateTimeField(null=True, blank=True)
    # Graph: the inbox delta link, and the change-notification subscription with its shared secret.
    delta_link = models.TextField(blank=True)
    # Graph: the inbox's folder id (the parentFolderId of what its delta names): the cached rows in that folder
    # are the ones the sync keeps; a listing caches other folders' messages too, and nothing keeps those.
    inbox_folder_id = models.CharField(max_length=255, blank=True)
    # Graph: the ids of Deleted Items and Junk Email, which a list without a folder leaves out (as Gmail's leaves out
    # TRASH and SPAM); asked of Graph by their well-known names once, then kept. None: not asked yet.
    left_out_folder_ids = models.JSONField(null=True, blank=True)
    subscription_id = models.CharField(max_length=128, blank=True, db_index=True)
    subscription_expires_at = models.DateTimeField(null=True, blank=True)
    client_state = EncryptedTextField(blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    full_sync_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "mailboxes"

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


class MailSend(models.Model):
    """One send through the API under an Idempotency-Key: the Message-ID every attempt carries, and whether an
    attempt's outcome is unknown.

    Neither Gmail's messages.send nor Graph's send takes an idempotency key. A send that timed out or lost its
    connection may have been accepted; the client retries with the same key (the 5xx left no replayable
    answer), and that retry looks the Message-ID up in Sent before sending again (services.writing).
    """

    SendDoubt = SendDoubt

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="mail_sends")
    # sha256 of the client's Idempotency-Key (keys are the owner's; the connection is too).
    key_digest = models.CharField(max_length=64)
    # sha256 of what the message says (services.writing._outgoing_digest): a retry must send the same message.
    content_digest = models.CharField(max_length=64)
    # RFC 5322 Message-ID, angle brackets included: the same in every attempt's MIME.
    message_id = models.CharField(max_length=255)
    send_doubt = models.CharField(max_length=16, choices=SendDoubt.choices, default=SendDoubt.NONE, blank=True)
    # When the last attempt began (it set send_doubt): a sendMail's Sent copy may lag it (services.writing).
    attempted_at = models.DateTimeField(null=True, blank=True)
    # Outlook with Mail.ReadWrite: the draft the message goes out through, stored before its send, so that a
    # retry asks that draft whether it went out (providers.graph.draft_sent_state) instead of making another.
    draft_id = models.CharField(max_length=255, blank=True)
    # The provider's id of the sent message once known ("" for Graph's sendMail, which answers none).
    external_id = models.CharField(max_length=255, blank=True)
    thread_id = models.CharField(max_length=255, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "key_digest"], name="mailsend_unique_key")]

    def __str__(self):
        return f"{self.message_id} ({'sent' if self.sent_at else self.send_doubt or 'not sent'})"
