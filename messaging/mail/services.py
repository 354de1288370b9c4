"""Mail verbs for one connection, whichever the provider: views, tasks and webhook handlers all call these.

Every verb starts from `mail_connection` (the owner's connection, checked for
the scopes that verb needs: 404 / 403 naming the scope / 409 re-authorize),
then calls the connection's adapter (providers.gmail or providers.graph),
which runs each request through the gateway with the provider's quota units.
The cache (MailMessage) is filled by listing and by push-driven sync; the list
endpoint reads it when the mailbox is fresh (synced by push within
MAIL_CACHE_FRESH_SECONDS) and the client asked for the plain newest page.
"""

import base64
import binascii
import email.utils
import io
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from integrations import oauth
from integrations.errors import DomainError
from integrations.models import Connection

from . import mime
from .models import Mailbox, MailMessage
from .providers import NotFound, for_connection
from .types import Message, Outgoing, OutgoingAttachment

GMAIL = "https://www.googleapis.com/auth/gmail."
# Per verb and provider: the scopes needed (a tuple: any one of them suffices).
NEED = {
    "read": {
        "google_oauth": [(f"{GMAIL}modify", f"{GMAIL}readonly")],
        "microsoft_oauth": [("Mail.ReadWrite", "Mail.Read")],
    },
    "send": {"google_oauth": [(f"{GMAIL}send", f"{GMAIL}compose", f"{GMAIL}modify")], "microsoft_oauth": ["Mail.Send"]},
    "compose": {"google_oauth": [(f"{GMAIL}compose", f"{GMAIL}modify")], "microsoft_oauth": ["Mail.ReadWrite"]},
    "modify": {"google_oauth": [f"{GMAIL}modify"], "microsoft_oauth": ["Mail.ReadWrite"]},
    "labels": {"google_oauth": [(f"{GMAIL}labels", f"{GMAIL}modify")], "microsoft_oauth": ["Mail.ReadWrite"]},
}
MAIL_PROVIDERS = {"google_oauth": "gmail", "microsoft_oauth": "outlook"}


def mail_connection(*, owner, connection_id, verb):
    row = Connection.objects.filter(pk=connection_id, owner=owner).values_list("provider", flat=True).first()
    if row is None or row not in NEED[verb]:
        raise DomainError(404, "connection_not_found", "No such mail connection; list yours at /api/v1/connections/.")
    return oauth.connection_for(owner=owner, connection_id=connection_id, capability="mail", need=NEED[verb][row])


def _adapter(conn):
    return for_connection(conn)


def mailbox_for(conn):
    mailbox, _ = Mailbox.objects.get_or_create(connection=conn)
    return mailbox


# --- Cache ------------------------------------------------------------------------


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


def _from_cache(row):
    from .types import Attachment

    return Message(
        id=row.external_id,
        thread_id=row.thread_id,
        subject=row.subject,
        sender=row.sender,
        to=row.to,
        cc=row.cc,
        snippet=row.snippet,
        date=row.sent_at,
        labels=row.labels,
        unread=row.unread,
        starred=row.starred,
        attachments=[Attachment(**a) for a in row.attachments],
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


# --- Reading ----------------------------------------------------------------------


def message_list(*, owner, connection_id, q="", label="", page_token="", filter_=""):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    mailbox = mailbox_for(conn)
    if not (q or page_token or filter_) and _fresh(mailbox):
        rows = mailbox.messages.all()
        if label:
            rows = rows.filter(labels__contains=[label])
        return {"messages": [_from_cache(r) for r in rows[:50]], "next_page_token": None, "source": "cache"}
    kwargs = {"q": q, "label": label, "page_token": page_token}
    if filter_:
        if conn.provider != "microsoft_oauth":
            raise DomainError(400, "invalid_filter", "filter ($filter) is for Outlook; use q with Gmail search syntax.")
        kwargs["filter_"] = filter_
    page = _adapter(conn).list_page(conn, **kwargs)
    cache_upsert(mailbox, page.messages)
    return {"messages": page.messages, "next_page_token": page.next_page_token, "source": "provider"}


def message_get(*, owner, connection_id, message_id):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    return _adapter(conn).get(conn, message_id)


def thread_get(*, owner, connection_id, thread_id):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    messages = _adapter(conn).thread(conn, thread_id)
    if not messages:
        raise DomainError(404, "not_found", "No such thread.")
    return messages


def attachment_get(*, owner, connection_id, message_id, attachment_id):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    data = _adapter(conn).attachment(conn, message_id, attachment_id)
    meta = {"filename": "attachment", "mime_type": "application/octet-stream"}
    row = MailMessage.objects.filter(mailbox__connection=conn, external_id=message_id).first()
    for a in row.attachments if row else []:
        if a.get("id") == attachment_id:
            meta = {"filename": a.get("filename") or "attachment", "mime_type": a.get("mime_type") or meta["mime_type"]}
    return data, meta


# --- Writing ----------------------------------------------------------------------


def _addresses(field, values):
    cleaned = []
    for n, value in enumerate(values or []):
        name, addr = email.utils.parseaddr(str(value))
        try:
            if not addr or "\n" in str(value) or "\r" in str(value):
                raise ValidationError("empty")
            validate_email(addr)
        except ValidationError:
            raise DomainError(
                400, "invalid_address", f"{field}[{n}] is not an email address: {str(value)[:100]!r}.", field=field
            ) from None
        cleaned.append(email.utils.formataddr((name, addr)) if name else addr)
    return cleaned


def _too_large(provider, limit, what):
    name = MAIL_PROVIDERS[provider]
    return DomainError(
        413,
        "attachment_too_large",
        f"{what} more than {limit} bytes, the most {name} accepts (MAIL_MAX_ATTACHMENT_BYTES).",
        limit_bytes=limit,
    )


def outgoing_from(data, *, provider, files=()):
    """Validate the client's message: addresses (400 naming the field), attachments (413 before any upload).

    Attachments come as base64 in JSON (`attachments`, bounded by the API's body limit) or as files of a
    multipart request (`files`, Django uploads, spooled to disk when large). Limits, per message:
    Gmail 35 MB for the whole message as sent (MIME, files base64-encoded: about 25 MB of files; checked
    again once composed), Outlook 150 MB (each file above GRAPH_INLINE_ATTACHMENT_BYTES goes up in an
    upload session). Both are MAIL_MAX_ATTACHMENT_BYTES.
    """
    to = _addresses("to", data.get("to"))
    cc = _addresses("cc", data.get("cc"))
    bcc = _addresses("bcc", data.get("bcc"))
    attachments, total = [], 0
    limit = settings.MAIL_MAX_ATTACHMENT_BYTES[MAIL_PROVIDERS[provider]]
    for n, item in enumerate(data.get("attachments") or []):
        try:
            content = base64.b64decode(item.get("content_base64", ""), validate=True)
        except (binascii.Error, ValueError):
            raise DomainError(
                400, "invalid_attachment", f"attachments[{n}].content_base64 is not base64.", field="attachments"
            ) from None
        total += len(content)
        if total > limit:
            raise _too_large(provider, limit, "Attachments add up to")
        attachments.append(
            OutgoingAttachment(
                filename=item.get("filename") or f"attachment-{n + 1}",
                mime_type=item.get("content_type") or "",
                size=len(content),
                file=io.BytesIO(content),
            )
        )
    for upload in files:
        total += upload.size
        if total > limit:
            raise _too_large(provider, limit, "Attachments add up to")
        mime_type = (upload.content_type or "").split(";")[0].strip()
        attachments.append(
            OutgoingAttachment(
                filename=(upload.name or f"attachment-{len(attachments) + 1}")[:255],
                mime_type=mime_type if "/" in mime_type else "",
                size=upload.size,
                file=upload,
            )
        )
    return Outgoing(
        to=to,
        cc=cc,
        bcc=bcc,
        subject=data.get("subject") or "",
        text=data.get("text") or "",
        html=data.get("html") or "",
        attachments=attachments,
        reply_to_message_id=data.get("reply_to_message_id") or "",
    )


def _compose(conn, outgoing, *, require_recipient=True, update=False):
    """The MIME message, the thread it belongs to (a reply threads under its original), and the attachments
    the adapter adds apart from the MIME (Graph: above GRAPH_INLINE_ATTACHMENT_BYTES, or on a draft update)."""
    if require_recipient and not (outgoing.to or outgoing.cc or outgoing.bcc):
        raise DomainError(400, "invalid_address", "to: at least one recipient is needed.", field="to")
    adapter = _adapter(conn)
    reply_headers, thread_id = {}, ""
    if outgoing.reply_to_message_id:
        try:
            original = adapter.get(conn, outgoing.reply_to_message_id)
        except NotFound:
            raise DomainError(
                400,
                "invalid_reply",
                "reply_to_message_id names no message in this mailbox.",
                field="reply_to_message_id",
            ) from None
        reply_headers = mime.reply_headers(original.headers)
        thread_id = original.thread_id
        if not outgoing.subject:
            outgoing.subject = mime.reply_subject(original.subject)
    apart = adapter.attachments_apart(outgoing.attachments, update=update)
    message = mime.build(outgoing, sender=conn.account, reply_to=reply_headers, attachments=not apart)
    if conn.provider == "google_oauth":
        limit = settings.MAIL_MAX_ATTACHMENT_BYTES["gmail"]
        if len(message.as_bytes()) > limit:
            raise _too_large(conn.provider, limit, "The message as sent (attachments base64-encoded) is")
    return message, thread_id, (outgoing.attachments if apart else [])


def message_send(*, owner, connection_id, data, files=()):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="send")
    outgoing = outgoing_from(data, provider=conn.provider, files=files)
    message, thread_id, apart = _compose(conn, outgoing)
    sent = _adapter(conn).send(conn, message, thread_id=thread_id, attachments=apart)
    return {
        "id": sent.id,
        "thread_id": sent.thread_id or thread_id,
        "message_id": sent.headers.get("message-id") or message["Message-ID"],
    }


def draft_create(*, owner, connection_id, data, files=()):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="compose")
    outgoing = outgoing_from(data, provider=conn.provider, files=files)
    message, thread_id, apart = _compose(conn, outgoing, require_recipient=False)
    return _adapter(conn).draft_create(conn, message, thread_id=thread_id, attachments=apart)


def draft_update(*, owner, connection_id, draft_id, data, files=()):
    """Replace the draft (recipients, subject, body and attachments: what is not sent is removed)."""
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="compose")
    outgoing = outgoing_from(data, provider=conn.provider, files=files)
    message, thread_id, apart = _compose(conn, outgoing, require_recipient=False, update=True)
    return _adapter(conn).draft_update(conn, draft_id, message, thread_id=thread_id, attachments=apart)


def draft_list(*, owner, connection_id, page_token=""):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="compose")
    drafts, token = _adapter(conn).draft_list(conn, page_token=page_token)
    return {"drafts": drafts, "next_page_token": token}


def draft_send(*, owner, connection_id, draft_id):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="send")
    sent = _adapter(conn).draft_send(conn, draft_id)
    return {"id": sent.id, "thread_id": sent.thread_id, "message_id": sent.headers.get("message-id", "")}


def draft_delete(*, owner, connection_id, draft_id):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="compose")
    _adapter(conn).draft_delete(conn, draft_id)


def label_list(*, owner, connection_id):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    return _adapter(conn).labels(conn)


def _label_name(name):
    name = (name or "").strip()
    if not name or len(name) > 225:
        raise DomainError(400, "invalid_label", "name: give the label a name of 1 to 225 characters.", field="name")
    return name


def label_create(*, owner, connection_id, name):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="labels")
    return _adapter(conn).label_create(conn, _label_name(name))


def label_rename(*, owner, connection_id, label_id, name):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="labels")
    return _adapter(conn).label_rename(conn, label_id, _label_name(name))


def label_delete(*, owner, connection_id, label_id):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="labels")
    _adapter(conn).label_delete(conn, label_id)


def message_modify(*, owner, connection_id, message_id, changes):
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="modify")
    result = _adapter(conn).modify(conn, message_id, **changes)
    mailbox = mailbox_for(conn)
    if changes.get("trash") is True:
        cache_delete(mailbox, [message_id])
    elif result.labels:
        MailMessage.objects.filter(mailbox=mailbox, external_id=message_id).update(
            labels=result.labels, unread="UNREAD" in result.labels, starred="STARRED" in result.labels
        )
    return result


# --- Sync and push ------------------------------------------------------------------


def mailbox_sync(*, connection_id):
    """Bring the cache up to date: Gmail history since the stored historyId (a full resync when Gmail answers
    404, history gone), Graph delta from the stored delta link. Idempotent; push handlers and tasks call it."""
    conn = Connection.objects.get(pk=connection_id)
    mailbox = mailbox_for(conn)
    adapter = _adapter(conn)
    if conn.provider == "google_oauth":
        result = None
        # Incremental only from a cursor a full sync established; a first sync lists the newest messages.
        if mailbox.history_id and mailbox.full_sync_at is not None:
            try:
                result = adapter.history_sync(conn, start_history_id=mailbox.history_id)
            except NotFound:
                result = None  # history older than Gmail keeps (about a week): start over
        if result is None:
            result = adapter.full_sync(conn, limit=settings.MAIL_FULL_SYNC_MESSAGES)
        fields = {"history_id": result.cursor}
    else:
        # Without a delta link, delta returns the whole inbox (a full sync) and the link to continue from.
        result = adapter.delta_sync(conn, delta_link=mailbox.delta_link)
        fields = {"delta_link": result.cursor}
    now = timezone.now()
    with transaction.atomic():
        if result.full and conn.provider == "google_oauth":
            mailbox.messages.exclude(external_id__in=[m.id for m in result.upserted]).delete()
        cache_upsert(mailbox, result.upserted)
        cache_delete(mailbox, result.deleted)
        fields["last_synced_at"] = now
        if result.full:
            fields["full_sync_at"] = now
        Mailbox.objects.filter(pk=mailbox.pk).update(**fields)
    return result


def push_start(*, owner, connection_id):
    """Register push for this mailbox (Gmail watch / Graph subscription) and sync it."""
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="read")
    mailbox_watch(connection_id=conn.pk)
    mailbox_sync(connection_id=conn.pk)
    return Mailbox.objects.get(connection=conn)


def mailbox_watch(*, connection_id):
    """Start or renew push: Gmail users.watch (lapses after 7 days); a Graph subscription (created or extended)."""
    conn = Connection.objects.get(pk=connection_id)
    mailbox = mailbox_for(conn)
    adapter = _adapter(conn)
    if conn.provider == "google_oauth":
        if not settings.GMAIL_PUBSUB_TOPIC:
            raise DomainError(
                503,
                "push_not_configured",
                "Gmail push is not configured; set GMAIL_PUBSUB_TOPIC.",
                missing=["GMAIL_PUBSUB_TOPIC"],
            )
        history_id, expires = adapter.watch(conn, topic=settings.GMAIL_PUBSUB_TOPIC)
        update = {"watch_expires_at": expires}
        if not mailbox.history_id:
            update["history_id"] = history_id
        Mailbox.objects.filter(pk=mailbox.pk).update(**update)
        return
    expires_at = timezone.now() + timedelta(minutes=settings.GRAPH_SUBSCRIPTION_MINUTES)
    if mailbox.subscription_id:
        try:
            expires = adapter.subscription_renew(conn, mailbox.subscription_id, expires_at=expires_at)
            Mailbox.objects.filter(pk=mailbox.pk).update(subscription_expires_at=expires)
            return
        except NotFound:
            pass  # Graph removed it: create a new one
    client_state = secrets.token_urlsafe(32)
    url = settings.APP_URL + reverse("mail-outlook-webhook")
    subscription_id, expires = adapter.subscribe(
        conn, notification_url=url, client_state=client_state, expires_at=expires_at
    )
    mailbox.subscription_id, mailbox.subscription_expires_at, mailbox.client_state = (
        subscription_id,
        expires,
        client_state,
    )
    mailbox.save(update_fields=["subscription_id", "subscription_expires_at", "client_state"])


def mailboxes_renew_due():
    """Beat (daily is enough; runs hourly): renew Gmail watches and Graph subscriptions that end within a day."""
    from integrations.task_base import enqueue_on_commit

    from .tasks import mail_watch_renew

    horizon = timezone.now() + timedelta(days=1)
    ids = set(Mailbox.objects.filter(watch_expires_at__lt=horizon).values_list("connection_id", flat=True))
    ids |= set(Mailbox.objects.filter(subscription_expires_at__lt=horizon).values_list("connection_id", flat=True))
    for pk in sorted(ids):
        enqueue_on_commit(mail_watch_renew, pk)
    return len(ids)


def messages_fetch(*, connection_id, message_ids):
    conn = Connection.objects.get(pk=connection_id)
    messages = _adapter(conn).get_many(conn, list(message_ids))
    cache_upsert(mailbox_for(conn), messages)
    return len(messages)


def messages_fetch_paced(*, connection_id, message_ids):
    """Queue the fetch of many messages as tasks of one batch each; the limiter paces them at the user's quota."""
    from integrations.task_base import enqueue_on_commit

    from .tasks import mail_fetch

    size = 50
    chunks = [list(message_ids[i : i + size]) for i in range(0, len(message_ids), size)]
    for chunk in chunks:
        enqueue_on_commit(mail_fetch, connection_id, chunk)
    return len(chunks)


def mailbox_unwatch(conn):
    """Before a connection's tokens go: stop Gmail's watch / delete the Graph subscription (oauth.on_disconnect)."""
    mailbox = Mailbox.objects.filter(connection=conn).first()
    if mailbox is None or conn.provider not in MAIL_PROVIDERS or conn.status != Connection.Status.ACTIVE:
        return
    adapter = _adapter(conn)
    try:
        if conn.provider == "google_oauth" and mailbox.watch_expires_at and mailbox.watch_expires_at > timezone.now():
            adapter.stop(conn)
        elif conn.provider == "microsoft_oauth" and mailbox.subscription_id:
            adapter.subscription_delete(conn, mailbox.subscription_id)
    except NotFound:
        pass  # already gone: what we wanted
