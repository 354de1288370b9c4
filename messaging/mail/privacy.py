"""What the mail app holds about a user (privacy registry): headers of cached messages per mailbox, and the
record of each send made with an Idempotency-Key (its Message-ID and the provider's id, no content)."""

from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .models import Mailbox, MailMessage, MailSend


def export_mail(user, out):
    out.json(
        "mail",
        {
            "mailboxes": rows(
                Mailbox.objects.filter(connection__owner=user),
                (
                    "id",
                    "connection_id",
                    "watch_expires_at",
                    "subscription_expires_at",
                    "last_synced_at",
                    "full_sync_at",
                ),
            ),
            "messages": rows(MailMessage.objects.filter(mailbox__connection__owner=user), exclude=("raw",)),
            # The key itself is kept only as a digest, which means nothing to anyone; left out.
            "sends": rows(MailSend.objects.filter(connection__owner=user), exclude=("key_digest",)),
        },
        description="The hub's cache of your mail headers (subject, sender, recipients, snippet, labels), and the "
        "Message-ID and provider id of each message sent with an Idempotency-Key.",
    )


def erase_mail(user, report):
    # Deleting a connection (integrations, at once) cascades to its mailbox and cache; this catches the rest.
    report.count("mail.MailMessage", MailMessage.objects.filter(mailbox__connection__owner=user).delete()[0])
    report.count("mail.Mailbox", Mailbox.objects.filter(connection__owner=user).delete()[0])
    report.count("mail.MailSend", MailSend.objects.filter(connection__owner=user).delete()[0])


def references(user):
    return set(
        Mailbox.objects.filter(connection__owner=user)
        .exclude(subscription_id="")
        .values_list("subscription_id", flat=True)
    )


register(
    PrivacyHolder(
        app="mail",
        models=("mail.Mailbox", "mail.MailMessage", "mail.MailSend"),
        export=export_mail,
        erase=erase_mail,
        references=references,
        description="A cache of your Gmail / Outlook message headers (bodies are fetched on demand, not stored).",
        retention="while the connection exists; removed with it.",
    )
)
