"""Writing: send (through a draft when Mail.ReadWrite is granted), drafts, attachments, folders as labels, verbs."""

import base64
import contextlib
from urllib.parse import quote

import httpx
from django.conf import settings

from integrations import egress, gateway, limiter
from integrations.errors import DomainError, PermanentError

from ...types import Draft, Label, Message
from .. import NotFound
from .client import GRAPH, PROVIDER, SELECT, _call, _follow, decode_token, encode_token, translate
from .shapes import message_from


def _mime_body(message):
    """Graph takes MIME as base64 text/plain (sendMail and message create)."""
    return {"content": base64.b64encode(message.as_bytes()), "headers": {"Content-Type": "text/plain"}}


def attachments_apart(attachments, *, update=False):
    """Whether files go to the draft one by one instead of inside the MIME.

    A draft update cannot carry MIME, so its files are always replaced one by one; otherwise only
    when they add up to more than GRAPH_INLINE_ATTACHMENT_BYTES.
    """
    return bool(attachments) and (update or sum(a.size for a in attachments) > settings.GRAPH_INLINE_ATTACHMENT_BYTES)


def _can_write(conn):
    from integrations.oauth.services import missing_scopes

    return not missing_scopes(conn, ["Mail.ReadWrite"])


def _upload(conn, message_id, item):
    """One file into an upload session: PUTs of GRAPH_UPLOAD_CHUNK_BYTES to the pre-authenticated uploadUrl."""
    session = _call(
        conn,
        "attachments.createUploadSession",
        "POST",
        f"/me/messages/{quote(message_id, safe='')}/attachments/createUploadSession",
        json={
            "AttachmentItem": {
                "attachmentType": "file",
                "name": item.filename,
                "size": item.size,
                "contentType": item.mime_type or "application/octet-stream",
            }
        },
    )
    upload_url = session.get("uploadUrl") or ""
    if not upload_url.startswith("https://"):
        raise PermanentError(PROVIDER, "the upload session has no https uploadUrl", code="invalid_upload_session")
    scope = f"mailbox:{conn.pk}"
    # No auth on this client: the uploadUrl carries its own token, and ours must not leave for another host.
    with httpx.Client(timeout=gateway.timeout_for(PROVIDER), transport=egress.transport()) as client:
        for offset, piece in item.chunks(settings.GRAPH_UPLOAD_CHUNK_BYTES):
            with (
                limiter.concurrency_slot(PROVIDER, scope, settings.GRAPH_MAILBOX_CONCURRENCY),
                GRAPH.attempt("attachments.upload", owner=conn.owner_id, scope=scope) as att,
            ):
                response = client.put(
                    upload_url,
                    content=piece,
                    headers={
                        "Content-Range": f"bytes {offset}-{offset + len(piece) - 1}/{item.size}",
                        "Content-Type": "application/octet-stream",
                    },
                )
                att.record(http_status=response.status_code, units={"requests": 1, "bytes": len(piece)})
                if response.status_code >= 400:
                    raise translate(response)


def _add_attachments(conn, message_id, attachments):
    for item in attachments:
        if item.size <= settings.GRAPH_INLINE_ATTACHMENT_BYTES:
            _call(
                conn,
                "attachments.add",
                "POST",
                f"/me/messages/{quote(message_id, safe='')}/attachments",
                json={
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": item.filename,
                    "contentType": item.mime_type or "application/octet-stream",
                    "contentBytes": base64.b64encode(item.read()).decode("ascii"),
                },
            )
        else:
            _upload(conn, message_id, item)


def _new_draft(conn, message, attachments):
    """A draft from the MIME, then its other files; deleted again if a file fails (no half-made draft left)."""
    draft = _call(conn, "drafts.create", "POST", "/me/messages", **_mime_body(message))
    if attachments:
        try:
            _add_attachments(conn, draft["id"], attachments)
        except Exception:
            with contextlib.suppress(Exception):  # the upload's error is the one to report
                draft_delete(conn, draft["id"])
            raise
    return draft


def send(conn, message, *, thread_id="", attachments=(), on_draft=None, draft_id=""):
    """Send; the answer carries the sent message's id (see the module docstring for how).

    `on_draft(draft)` is called with the new draft (its id and conversation) once it is complete and before
    it is sent: services.writing stores it, so that a retry after an unknown outcome can ask that draft
    (`draft_sent_state`). `draft_id` is such a draft of an earlier attempt, found still unsent: it is sent
    instead of making another (which would leave the first behind in Drafts).
    """
    if not _can_write(conn):
        if attachments:
            raise DomainError(
                403,
                "missing_scope",
                "Attachments above GRAPH_INLINE_ATTACHMENT_BYTES go up through a draft, which needs Mail.ReadWrite; "
                "authorize the connection again with the mail capability.",
                missing_scopes=["Mail.ReadWrite"],
            )
        # Graph threads a MIME reply on its In-Reply-To/References; it answers 202 without the new message's id.
        _call(conn, "messages.send", "POST", "/me/sendMail", expect_json=False, **_mime_body(message))
        return Message(id="", thread_id=thread_id)
    if draft_id:
        draft = {"id": draft_id, "conversationId": thread_id, "internetMessageId": message["Message-ID"]}
    else:
        draft = _new_draft(conn, message, attachments)
        if on_draft is not None:
            on_draft(Message(id=draft["id"], thread_id=draft.get("conversationId") or thread_id))
    _call(conn, "drafts.send", "POST", f"/me/messages/{quote(draft['id'], safe='')}/send", expect_json=False)
    return Message(
        id=draft["id"],
        thread_id=draft.get("conversationId") or thread_id,
        headers={"message-id": draft.get("internetMessageId") or ""},
    )


def draft_sent_state(conn, draft_id):
    """Whether the draft a send went out through was sent: the sent message, or None while it is still a draft.

    Raises NotFound when Graph has no message under that id. What Graph documents, and what follows:
    - A draft keeps its immutable id when sent: "Get the message using the ID from the first step. This is
      the copy in Sent Items" (outlook-immutable-id, "Immutable ID with sending mail"; every request here
      asks for immutable ids). So a GET on the id that answers isDraft false is the sent message itself.
    - isDraft: "A message is a draft if it hasn't been sent yet" (message resource). So isDraft true means
      the earlier send did not happen, and this draft is the one to send.
    - "Getting the message in Sent Items may not succeed immediately after sending the message. The copy of
      the message is not created until the message successfully sends, which may take time." Not documented:
      the answer in that moment. Assumed: the draft no longer answers isDraft true once Graph accepted its
      send, so the GET answers 404 (ErrorItemNotFound) until the copy exists. A 404 also follows a draft the
      owner deleted; the caller decides what it means (services.writing._sent_before).
    """
    m = _call(
        conn,
        "drafts.sent_check",
        "GET",
        f"/me/messages/{quote(draft_id, safe='')}",
        params={"$select": "id,conversationId,internetMessageId,isDraft"},
    )
    if m.get("isDraft", True):
        return None
    return Message(
        id=m.get("id") or draft_id,
        thread_id=m.get("conversationId", ""),
        headers={"message-id": m.get("internetMessageId") or ""},
    )


def sent_lookup(conn, message_id):
    """The message in Sent Items whose internetMessageId is `message_id`, or None.

    Neither sendMail nor a draft's send takes an idempotency key: a retry after a send whose outcome is
    unknown asks here first. How the Message-ID gets there: Graph documents internetMessageId as writable
    only while a message is a draft (message-update: "Updatable only if isDraft = true") and names no way to
    set it on a JSON sendMail, so the hub never relies on the JSON property: both ways of sending here carry
    the MIME (a draft created from MIME, or sendMail with MIME), whose Message-ID header Exchange keeps as the
    message's internetMessageId. The sent copy lands in Sent Items a moment after Graph's 202, so a retry
    within that moment can still miss it: a send made through a draft asks that draft first instead
    (`draft_sent_state`); only sendMail, which leaves nothing to ask, relies on this lookup alone.
    """
    quoted = message_id.replace("'", "''")  # OData string literal
    page = _call(
        conn,
        "messages.sent_lookup",
        "GET",
        "/me/mailFolders/sentitems/messages",
        params={"$filter": f"internetMessageId eq '{quoted}'", "$select": "id,conversationId,internetMessageId"},
    )
    if not page.get("value"):
        return None
    found = page["value"][0]
    return Message(
        id=found["id"],
        thread_id=found.get("conversationId", ""),
        headers={"message-id": found.get("internetMessageId") or message_id},
    )


def draft_create(conn, message, *, thread_id="", attachments=()):
    draft = _new_draft(conn, message, attachments)
    return Draft(id=draft["id"], message=message_from(draft))


def draft_update(conn, draft_id, message, *, thread_id="", attachments=()):
    """Replace the draft's fields (a draft cannot be replaced by MIME), then its attachments: the old ones are
    deleted and `attachments` added (inline or by upload session), so the draft holds what the client sent."""
    body_html = message.get_body(preferencelist=("html",))
    body_text = message.get_body(preferencelist=("plain",))
    body = (
        {"contentType": "html", "content": body_html.get_content()}
        if body_html
        else {
            "contentType": "text",
            "content": body_text.get_content() if body_text else "",
        }
    )
    from ... import mime

    patch = {
        "subject": message.get("Subject", ""),
        "body": body,
        "toRecipients": [{"emailAddress": {"address": a["email"]}} for a in mime.addresses(message.get("To"))],
        "ccRecipients": [{"emailAddress": {"address": a["email"]}} for a in mime.addresses(message.get("Cc"))],
        "bccRecipients": [{"emailAddress": {"address": a["email"]}} for a in mime.addresses(message.get("Bcc"))],
    }
    path = f"/me/messages/{quote(draft_id, safe='')}"
    m = _call(conn, "drafts.update", "PATCH", path, json=patch)
    existing = _call(conn, "attachments.list", "GET", f"{path}/attachments", params={"$select": "id"})
    for old in existing.get("value", []):
        with contextlib.suppress(NotFound):  # already gone
            _call(
                conn,
                "attachments.delete",
                "DELETE",
                f"{path}/attachments/{quote(old['id'], safe='')}",
                expect_json=False,
            )
    _add_attachments(conn, draft_id, attachments)
    return Draft(id=m["id"], message=message_from(m))


def draft_list(conn, *, page_token=""):
    if page_token:
        page = _call(conn, "drafts.list", "GET", _follow(decode_token(page_token)))
    else:
        params = {"$top": 50, "$select": SELECT}
        page = _call(conn, "drafts.list", "GET", "/me/mailFolders/drafts/messages", params=params)
    drafts = [Draft(id=m["id"], message=message_from(m)) for m in page.get("value", [])]
    return drafts, encode_token(page.get("@odata.nextLink", ""))


def draft_send(conn, draft_id):
    """Send a draft; its immutable id stays the sent message's id (read first: its thread and Message-ID)."""
    path = f"/me/messages/{quote(draft_id, safe='')}"
    draft = _call(conn, "drafts.get", "GET", path, params={"$select": "id,conversationId,internetMessageId,isDraft"})
    if draft.get("isDraft") is False:
        raise DomainError(409, "not_a_draft", "This message was already sent; it is no longer a draft.")
    _call(conn, "drafts.send", "POST", f"{path}/send", expect_json=False)
    return Message(
        id=draft.get("id") or draft_id,
        thread_id=draft.get("conversationId", ""),
        headers={"message-id": draft.get("internetMessageId") or ""},
    )


def draft_delete(conn, draft_id):
    _call(conn, "drafts.delete", "DELETE", f"/me/messages/{quote(draft_id, safe='')}", expect_json=False)


def labels(conn):
    page = _call(conn, "labels.list", "GET", "/me/mailFolders", params={"$top": 100})
    return [
        Label(id=f["id"], name=f.get("displayName", ""), type="system" if f.get("wellKnownName") else "user")
        for f in page.get("value", [])
    ]


def label_create(conn, name):
    f = _call(conn, "labels.create", "POST", "/me/mailFolders", json={"displayName": name})
    return Label(id=f["id"], name=f.get("displayName", name))


def label_rename(conn, label_id, name):
    f = _call(conn, "labels.patch", "PATCH", f"/me/mailFolders/{quote(label_id, safe='')}", json={"displayName": name})
    return Label(id=f["id"], name=f.get("displayName", name))


def label_delete(conn, label_id):
    _call(conn, "labels.delete", "DELETE", f"/me/mailFolders/{quote(label_id, safe='')}", expect_json=False)


def _move(conn, message_id, destination):
    m = _call(
        conn,
        "messages.move",
        "POST",
        f"/me/messages/{quote(message_id, safe='')}/move",
        json={"destinationId": destination},
    )
    return message_from(m)


def modify(conn, message_id, *, add=(), remove=(), read=None, starred=None, archive=False, trash=None):
    """The one-API verbs on Graph: isRead and flag are fields; labels are folders, so applying one moves the message.

    A move gives the message a new id in its new folder; the answer carries it.
    """
    patch = {}
    if read is not None:
        patch["isRead"] = bool(read)
    if starred is not None:
        patch["flag"] = {"flagStatus": "flagged" if starred else "notFlagged"}
    result = Message(id=message_id, thread_id="")
    if patch:
        result = message_from(
            _call(conn, "messages.modify", "PATCH", f"/me/messages/{quote(message_id, safe='')}", json=patch)
        )
    destination = None
    if trash is True:
        destination = "deleteditems"
    elif archive:
        destination = "archive"
    elif add:
        destination = list(add)[0]
    elif remove or trash is False:
        destination = "inbox"
    if destination:
        result = _move(conn, result.id or message_id, destination)
    return result
