"""Writing: send, drafts, labels and the one-API verbs (labels UNREAD, STARRED, INBOX; trash)."""

import base64
import io
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from googleapiclient.http import MediaIoBaseUpload

from ...types import Draft, Label, Message
from .client import UNITS, _base, _batch, _call, _service
from .shapes import message_from


def _raw(message):
    return base64.urlsafe_b64encode(message.as_bytes()).decode("ascii")


def attachments_apart(attachments, *, update=False):
    """Gmail takes every file inside the MIME message (one upload); nothing is added apart."""
    return False


def _rebased(request):
    """googleapiclient keeps https for upload URLs when GMAIL_API_BASE points at a local emulator over http."""
    if _base():
        base, uri = urlsplit(_base()), urlsplit(request.uri)
        request.uri = urlunsplit((base.scheme, base.netloc, uri.path, uri.query, uri.fragment))
    return request


def _message_request(resource, message, *, thread_id="", wrap=False, **kwargs):
    """A send/create/update request for `message`: the raw MIME in JSON up to GMAIL_RESUMABLE_UPLOAD_BYTES, above
    that the media upload endpoint (`/upload/gmail/v1/...`, message/rfc822) as a resumable upload in chunks of
    GMAIL_UPLOAD_CHUNK_BYTES (Gmail accepts up to 35 MB there)."""
    data = message.as_bytes()
    meta = {"threadId": thread_id} if thread_id else {}
    if len(data) <= settings.GMAIL_RESUMABLE_UPLOAD_BYTES:
        meta = {**meta, "raw": base64.urlsafe_b64encode(data).decode("ascii")}
        return resource(userId="me", body={"message": meta} if wrap else meta, **kwargs)
    media = MediaIoBaseUpload(
        io.BytesIO(data), mimetype="message/rfc822", chunksize=settings.GMAIL_UPLOAD_CHUNK_BYTES, resumable=True
    )
    body = ({"message": meta} if meta else None) if wrap else (meta or None)
    return _rebased(resource(userId="me", body=body, media_body=media, **kwargs))


def send(conn, message, *, thread_id="", attachments=(), on_draft=None, draft_id=""):
    """messages.send makes no draft: `on_draft` is never called and `draft_id` never given (as in graph.send)."""
    svc = _service(conn)
    request = _message_request(svc.users().messages().send, message, thread_id=thread_id)
    sent = _call(conn, "messages.send", request)
    return Message(id=sent["id"], thread_id=sent.get("threadId", ""), labels=sent.get("labelIds", []))


def sent_lookup(conn, message_id):
    """The message this mailbox sent with `message_id` (RFC 5322, in angle brackets), or None.

    messages.send takes no idempotency key: a retry after a send whose outcome is unknown asks here first.
    `rfc822msgid:` matches the Message-ID header Gmail keeps from the raw MIME; SENT with spam and trash
    included, so a sent copy the owner already deleted still counts as sent.
    """
    svc = _service(conn)
    request = (
        svc.users()
        .messages()
        .list(
            userId="me",
            q=f"rfc822msgid:{message_id.strip('<>')}",
            labelIds=["SENT"],
            includeSpamTrash=True,
            maxResults=1,
        )
    )
    listed = _call(conn, "messages.sent_lookup", request, units=UNITS["messages.list"])
    found = listed.get("messages") or []  # no match: no "messages" key at all, only resultSizeEstimate 0
    if not found:
        return None
    return Message(
        id=found[0]["id"], thread_id=found[0].get("threadId", ""), labels=["SENT"], headers={"message-id": message_id}
    )


def _draft(resource):
    message = resource.get("message") or {}
    return Draft(id=resource["id"], message=message_from(message) if message.get("id") else None)


def draft_create(conn, message, *, thread_id="", attachments=()):
    svc = _service(conn)
    request = _message_request(svc.users().drafts().create, message, thread_id=thread_id, wrap=True)
    return _draft(_call(conn, "drafts.create", request))


def draft_update(conn, draft_id, message, *, thread_id="", attachments=()):
    svc = _service(conn)
    request = _message_request(svc.users().drafts().update, message, thread_id=thread_id, wrap=True, id=draft_id)
    return _draft(_call(conn, "drafts.update", request))


def draft_list(conn, *, page_token=""):
    svc = _service(conn)
    kwargs = {"userId": "me", "maxResults": 50}
    if page_token:
        kwargs["pageToken"] = page_token
    listed = _call(conn, "drafts.list", svc.users().drafts().list(**kwargs))
    ids = [d["id"] for d in listed.get("drafts", [])]
    requests = [(i, svc.users().drafts().get(userId="me", id=i, format="metadata")) for i in ids]
    found = _batch(conn, "drafts.get", requests, UNITS["drafts.get"])
    return [_draft(found[i]) for i in ids if i in found], listed.get("nextPageToken")


def draft_send(conn, draft_id):
    svc = _service(conn)
    sent = _call(conn, "drafts.send", svc.users().drafts().send(userId="me", body={"id": draft_id}))
    return Message(id=sent["id"], thread_id=sent.get("threadId", ""), labels=sent.get("labelIds", []))


def draft_delete(conn, draft_id):
    svc = _service(conn)
    _call(conn, "drafts.delete", svc.users().drafts().delete(userId="me", id=draft_id))


def labels(conn):
    svc = _service(conn)
    listed = _call(conn, "labels.list", svc.users().labels().list(userId="me"))
    return [Label(id=lb["id"], name=lb["name"], type=lb.get("type", "user")) for lb in listed.get("labels", [])]


def label_create(conn, name):
    svc = _service(conn)
    lb = _call(conn, "labels.create", svc.users().labels().create(userId="me", body={"name": name}))
    return Label(id=lb["id"], name=lb["name"], type=lb.get("type", "user"))


def label_rename(conn, label_id, name):
    svc = _service(conn)
    lb = _call(conn, "labels.patch", svc.users().labels().patch(userId="me", id=label_id, body={"name": name}))
    return Label(id=lb["id"], name=lb["name"], type=lb.get("type", "user"))


def label_delete(conn, label_id):
    svc = _service(conn)
    _call(conn, "labels.delete", svc.users().labels().delete(userId="me", id=label_id))


def modify(conn, message_id, *, add=(), remove=(), read=None, starred=None, archive=False, trash=None):
    """Apply the one-API verbs as Gmail label changes (UNREAD, STARRED, INBOX) or trash/untrash."""
    svc = _service(conn)
    add, remove = list(add), list(remove)
    if read is not None:
        (remove if read else add).append("UNREAD")
    if starred is not None:
        (add if starred else remove).append("STARRED")
    if archive:
        remove.append("INBOX")
    result = None
    if add or remove:
        body = {"addLabelIds": add, "removeLabelIds": remove}
        result = _call(conn, "messages.modify", svc.users().messages().modify(userId="me", id=message_id, body=body))
    if trash is True:
        result = _call(conn, "messages.trash", svc.users().messages().trash(userId="me", id=message_id))
    elif trash is False:
        result = _call(conn, "messages.untrash", svc.users().messages().untrash(userId="me", id=message_id))
    labels_now = (result or {}).get("labelIds", [])
    return Message(id=message_id, thread_id=(result or {}).get("threadId", ""), labels=labels_now)
