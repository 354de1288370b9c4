"""Writing verbs: an outgoing message built and checked from the request, send, drafts, labels and
message changes.
"""

import base64
import binascii
import email.utils
import hashlib
import io
import json
import math
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations import oauth
from integrations.errors import DomainError, proves_nothing_sent
from integrations.oauth.services import missing_scopes

from .. import mime
from ..models import MailMessage, MailSend
from ..providers import NotFound
from ..types import Message, Outgoing, OutgoingAttachment
from .access import MAIL_PROVIDERS, NEED, _adapter, mail_connection, mailbox_for
from .cache import cache_delete


def _addresses(field, values):
    cleaned = []
    for n, value in enumerate(values or []):
        # parseaddr keeps the first of several addresses and drops the rest ("a@x.com, b@y.com" sent to a@x.com
        # alone, answered 202): each item must be exactly one address.
        found = [pair for pair in email.utils.getaddresses([str(value)]) if any(pair)]
        if len(found) > 1:
            raise DomainError(
                400,
                "invalid_address",
                f"{field}[{n}] holds {len(found)} addresses: give each recipient its own item.",
                field=field,
            )
        name, addr = found[0] if found else ("", "")
        try:
            if not addr or mime.breaks_line(str(value)):
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
    if mime.breaks_line(value):
        raise DomainError(400, "invalid_header", f"{field} must be one line (no line breaks).", field=field)
    return value


# A file's type as RFC 6838 names one: type "/" subtype, no parameters (a `name=` among them would name the file
# otherwise than its Content-Disposition does) and not multipart/*, which a file's bytes cannot be (no boundary).
_FILE_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def _file_type(value):
    value = value.strip()
    return value if _FILE_TYPE.fullmatch(value) and not value.lower().startswith("multipart/") else None


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
        mime_type = _file_type(item.get("content_type") or "") if item.get("content_type") else ""
        if mime_type is None:
            raise DomainError(
                400,
                "invalid_attachment",
                f"attachments[{n}].content_type is not a file's type: give type/subtype alone, e.g. application/pdf.",
                field="attachments",
            )
        total += len(content)
        if total > limit:
            raise _too_large(provider, limit, "Attachments add up to")
        attachments.append(
            OutgoingAttachment(
                filename=_header_text("attachments", item.get("filename") or f"attachment-{n + 1}"),
                mime_type=mime_type,
                size=len(content),
                file=io.BytesIO(content),
            )
        )
    for upload in files:
        total += upload.size
        if total > limit:
            raise _too_large(provider, limit, "Attachments add up to")
        # The browser's guess of an uploaded file's type: one that cannot be a file's goes as octet-stream.
        mime_type = _file_type((upload.content_type or "").split(";")[0])
        attachments.append(
            OutgoingAttachment(
                filename=_header_text("attachments", (upload.name or f"attachment-{len(attachments) + 1}")[:255]),
                mime_type=mime_type or "",
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


def _compose(conn, outgoing, *, require_recipient=True, update=False, message_id=""):
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
    message = mime.build(
        outgoing, sender=conn.account, reply_to=reply_headers, attachments=not apart, message_id=message_id
    )
    if conn.provider == "google_oauth":
        limit = settings.MAIL_MAX_ATTACHMENT_BYTES["gmail"]
        if len(message.as_bytes()) > limit:
            raise _too_large(conn.provider, limit, "The message as sent (attachments base64-encoded) is")
    return message, thread_id, (outgoing.attachments if apart else [])


def _file_digest(attachment):
    digest = hashlib.sha256()
    for _, piece in attachment.chunks(1 << 20):
        digest.update(piece)
    return digest.hexdigest()


def _outgoing_digest(outgoing):
    """What the message says, before _compose adds to it. Files by their bytes too: the retry this row serves
    follows a 5xx, which leaves the API's own Idempotency-Key check no record, so only this digest tells another
    file of the same name and size."""
    files = [(a.filename, a.mime_type, a.size, _file_digest(a)) for a in outgoing.attachments]
    said = [outgoing.to, outgoing.cc, outgoing.bcc, outgoing.subject, outgoing.text, outgoing.html]
    said += [outgoing.reply_to_message_id, files]
    return hashlib.sha256(json.dumps(said).encode()).hexdigest()


def _send_row(conn, idempotency_key, outgoing):
    """The MailSend of this Idempotency-Key on this connection, made by its first attempt; None without a key.

    A failed attempt leaves the API no record of the key (integrations.api.idempotency), so this row is what
    tells a retry with another message under the same key (a 422, as the API answers while it keeps the key).
    """
    if not idempotency_key:
        return None
    key_digest, content_digest = hashlib.sha256(idempotency_key.encode()).hexdigest(), _outgoing_digest(outgoing)
    try:
        with transaction.atomic():
            row, _ = MailSend.objects.get_or_create(
                connection=conn,
                key_digest=key_digest,
                defaults={"content_digest": content_digest, "message_id": mime.new_message_id()},
            )
    except IntegrityError:  # made by a concurrent first attempt a moment ago
        row = MailSend.objects.get(connection=conn, key_digest=key_digest)
    if row.content_digest != content_digest:
        raise DomainError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different message; use a new key for a new message.",
        )
    return row


def _sent_answer(row):
    return {"id": row.external_id, "thread_id": row.thread_id, "message_id": row.message_id}


def _mark_sent(row, sent, *, thread_id=""):
    row.external_id, row.thread_id = sent.id or "", sent.thread_id or thread_id
    row.send_doubt, row.sent_at = MailSend.SendDoubt.NONE, timezone.now()
    MailSend.objects.filter(pk=row.pk).update(
        external_id=row.external_id, thread_id=row.thread_id, send_doubt=row.send_doubt, sent_at=row.sent_at
    )
    return _sent_answer(row)


def _sent_before(conn, row):
    """The answer of an earlier attempt that sent this message, or None if none did.

    An attempt whose outcome is unknown (timed out, lost its connection, a 5xx, or a process that died
    mid-call) may have been accepted. A send made through a draft (Outlook with Mail.ReadWrite) asks that
    draft; any other is looked up in Sent by its Message-ID before sending again.
    """
    if row.sent_at:
        return _sent_answer(row)
    if row.draft_id:
        return _draft_sent_before(conn, row)
    if not row.send_doubt:
        return None
    if missing_scopes(conn, NEED["read"][conn.provider]):
        # Sending again blind could deliver it twice; the client can check Sent and choose.
        raise DomainError(
            409,
            "send_outcome_unknown",
            "An earlier attempt with this Idempotency-Key may have sent the message, and this connection cannot "
            "read mail to check: look in the mailbox's Sent folder, and send with a new Idempotency-Key if it is "
            "not there.",
        )
    found = _adapter(conn).sent_lookup(conn, row.message_id)
    if found is not None:
        return _mark_sent(row, found)
    _wait_for_sent_copy(conn, row)
    return None


def _wait_for_sent_copy(conn, row):
    """A 503 with Retry-After while a sendMail's copy may still be on its way to Sent Items.

    Outlook without Mail.ReadWrite sends by sendMail: no draft to ask, no id in the answer, and Graph files the
    sent copy a while after accepting the message ("the copy of the message is not created until the message
    successfully sends, which may take time"). Not finding it right after an attempt whose outcome is unknown
    proves nothing; sending again then delivered the mail twice. So within OUTLOOK_SENT_COPY_WAIT_SECONDS of that
    attempt the client is told to come back; after it, a missing copy means nothing went out, and the retry sends.
    """
    wait = settings.OUTLOOK_SENT_COPY_WAIT_SECONDS if conn.provider == "microsoft_oauth" else 0
    if not wait or row.attempted_at is None:
        return
    left = math.ceil(wait - (timezone.now() - row.attempted_at).total_seconds())
    if left > 0:
        raise DomainError(
            503,
            "send_outcome_pending",
            "An earlier attempt with this Idempotency-Key may have sent the message, and Outlook files a sent copy "
            "only a while after accepting it: retry with the same key after Retry-After seconds.",
            headers={"Retry-After": str(left)},
            retry_after=left,
        )


def _draft_sent_before(conn, row):
    """Asked of the draft an earlier attempt stored before sending it, also after a clean refusal: a draft
    still unsent is sent as it is rather than left behind in Drafts beside a second one.

    Why not Sent Items first: Graph puts the sent copy there a moment after its 202, so a retry within that
    moment would miss it and send again, while the draft answers at once (providers.graph.draft_sent_state).
    """
    try:
        sent = _adapter(conn).draft_sent_state(conn, row.draft_id)
    except NotFound:
        if not row.send_doubt:
            # No attempt reached Graph with a send, so the owner deleted the draft: make a new one.
            row.draft_id = ""
            MailSend.objects.filter(pk=row.pk).update(draft_id="")
            return None
        # Gone after a send whose outcome is unknown: being sent, its copy not yet in Sent Items. It keeps
        # the draft's immutable id there, which is the answer, as a send that heard Graph's 202 answers.
        # (Had the owner deleted an unsent draft in that moment, the client is told "sent" of a message
        # that was not: sending it again instead would risk the duplicate this row exists to prevent.)
        return _mark_sent(row, Message(id=row.draft_id, thread_id=row.thread_id))
    return _mark_sent(row, sent) if sent is not None else None


def _keep_draft(row):
    """Stores the draft on the row before it is sent: what a retry asks (_draft_sent_before)."""

    def keep(draft):
        row.draft_id, row.thread_id = draft.id, draft.thread_id or row.thread_id
        MailSend.objects.filter(pk=row.pk).update(draft_id=row.draft_id, thread_id=row.thread_id)

    return keep


def message_send(*, owner, connection_id, data, files=(), idempotency_key=""):
    """Send; with an Idempotency-Key, at most once however often the client retries.

    Neither Gmail's messages.send nor Graph's send takes an idempotency key, and a retry follows a failure
    (the failed attempt left no replayable answer, integrations.api.idempotency). So every attempt of one key
    carries the same Message-ID, and an attempt whose outcome is unknown is marked on the MailSend row: the
    next one looks that Message-ID up in Sent first and answers what it finds instead of sending again. On
    Outlook's draft path the row also keeps the draft before it is sent, and the next attempt asks that
    draft instead (_draft_sent_before): the Sent copy can lag Graph's 202, the draft cannot.
    """
    conn = mail_connection(owner=owner, connection_id=connection_id, verb="send")
    outgoing = outgoing_from(data, provider=conn.provider, files=files)
    row = _send_row(conn, idempotency_key, outgoing)
    if row is not None and (earlier := _sent_before(conn, row)) is not None:
        return earlier
    message, thread_id, apart = _compose(conn, outgoing, message_id=row.message_id if row else "")
    draft = {}
    if row is not None:
        # A token refresh that fails (busy elsewhere, timed out) fails before anything leaves: here, so that the
        # attempt is not taken for one whose send may have happened.
        oauth.access_token(connection=conn)
        MailSend.objects.filter(pk=row.pk).update(send_doubt=MailSend.SendDoubt.IN_FLIGHT, attempted_at=timezone.now())
        draft = {"on_draft": _keep_draft(row), "draft_id": row.draft_id}
        thread_id = row.thread_id or thread_id
    try:
        sent = _adapter(conn).send(conn, message, thread_id=thread_id, attachments=apart, **draft)
    except Exception as exc:
        if row is not None:
            doubt = MailSend.SendDoubt.NONE if proves_nothing_sent(exc) else MailSend.SendDoubt.AMBIGUOUS
            MailSend.objects.filter(pk=row.pk).update(send_doubt=doubt)
        raise
    if row is not None:
        return _mark_sent(row, sent, thread_id=thread_id)
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
    # Gmail's answer is the message's labels, none at all once it is read and archived (labelIds left out);
    # Graph's names the folder the message is in.
    elif conn.provider == "google_oauth" or result.labels:
        if conn.provider == "google_oauth":  # Gmail says read/starred with its UNREAD / STARRED labels
            unread, starred = "UNREAD" in result.labels, "STARRED" in result.labels
        else:  # Outlook's labels are folder ids; the message Graph answered says isRead / flag itself
            unread, starred = result.unread, result.starred
        MailMessage.objects.filter(mailbox=mailbox, external_id=message_id).update(
            labels=result.labels, unread=unread, starred=starred
        )
    return result
