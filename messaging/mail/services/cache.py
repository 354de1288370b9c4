"""The message cache (MailMessage): filled by listing and push-driven sync, read when the mailbox is fresh."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from ..models import MailMessage
from ..types import Message


def _cache_fields(m):
    return {
        "thread_id": m.thread_id,
        "subject": m.subject[:998],
        "sender": m.sender,
        "to": m.to,
        "cc": m.cc,
        "snippet": m.snippet,
        "sent_at": m.date,
        "labels": m.labels,
        "unread": m.unread,
        "starred": m.starred,
        "attachments": [a if isinstance(a, dict) else a.__dict__ for a in m.attachments],
        "raw": m.raw,
    }


def cache_upsert(mailbox, messages):
    for m in messages:
        MailMessage.objects.update_or_create(mailbox=mailbox, external_id=m.id, defaults=_cache_fields(m))


def cache_delete(mailbox, ids):
    # Already gone counts as done, so a replayed notification is harmless.
    MailMessage.objects.filter(mailbox=mailbox, external_id__in=list(ids)).delete()


def _from_cache(row, adapter):
    from ..types import Attachment

    # Bcc and the Message-ID / References a reply needs have no column: the provider's payload, kept as the list
    # read it, has them (a cached list answered none where Graph's or Gmail's own list did).
    listed = adapter.message_from(row.raw) if row.raw else Message(id=row.external_id, thread_id="")
    return Message(
        id=row.external_id,
        thread_id=row.thread_id,
        subject=row.subject,
        sender=row.sender,
        to=row.to,
        cc=row.cc,
        bcc=listed.bcc,
        snippet=row.snippet,
        date=row.sent_at,
        labels=row.labels,
        unread=row.unread,
        starred=row.starred,
        attachments=[Attachment(**a) for a in row.attachments],
        headers=listed.headers,
        raw=row.raw,
    )


def _fresh(mailbox):
    if mailbox.last_synced_at is None:
        return False
    push = mailbox.watch_expires_at or mailbox.subscription_expires_at
    now = timezone.now()
    return bool(
        push and push > now and now - mailbox.last_synced_at < timedelta(seconds=settings.MAIL_CACHE_FRESH_SECONDS)
    )
