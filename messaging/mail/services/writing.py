"""Writing verbs: an outgoing message built and checked from the request, send, drafts, labels and
message changes.
"""

import base64
import binascii
import email.utils
import io

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from integrations.errors import DomainError

from .. import mime
from ..models import MailMessage
from ..providers import NotFound
from ..types import Outgoing, OutgoingAttachment
from .access import MAIL_PROVIDERS, _adapter, mail_connection, mailbox_for
from .cache import cache_delete


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


def _header_text(field, value):
    """A value that goes into a MIME header as it is: a line break would end the header (a 400, not a 500)."""
    if "\r" in value or "\n" in value:
        raise DomainError(400, "invalid_header", f"{field} must be one line (no line breaks).", field=field)
    return value


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
                filename=_header_text("attachments", item.get("filename") or f"attachment-{n + 1}"),
                mime_type=_header_text("attachments", item.get("content_type") or ""),
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
                filename=_header_text("attachments", (upload.name or f"attachment-{len(attachments) + 1}")[:255]),
                mime_type=mime_type if "/" in mime_type else "",
                size=upload.size,
                file=upload,
            )
        )
    return Outgoing(
        to=to,
        cc=cc,
        bcc=bcc,
        subject=_header_text("subject", data.get("subject") or ""),
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
        if conn.provider == "google_oauth":  # Gmail says read/starred with its UNREAD / STARRED labels
            unread, starred = "UNREAD" in result.labels, "STARRED" in result.labels
        else:  # Outlook's labels are folder ids; the message Graph answered says isRead / flag itself
            unread, starred = result.unread, result.starred
        MailMessage.objects.filter(mailbox=mailbox, external_id=message_id).update(
            labels=result.labels, unread=unread, starred=starred
        )
    return result
