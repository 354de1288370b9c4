"""Outlook mail over Microsoft Graph with httpx: the only module that speaks Graph.

Why httpx and not msgraph-sdk: the SDK is async-first (kiota) and would put
an event loop inside Celery workers; it wants azure-identity credentials where
the hub already holds and refreshes its own tokens (integrations.oauth); its
middleware retries 429/503 by itself, which would hide attempts from the call
log and multiply them under our one retry loop; and its models add little over
the JSON we normalise anyway. Plain httpx keeps one request = one gateway
attempt = one ProviderCall, and respx intercepts it in tests. Every request runs
inside `GRAPH.attempt` (an `HttpxAdapter`: httpx's timeouts and transport
failures translated once); Graph's error answers are translated by `translate`.

- Per mailbox, at most GRAPH_MAILBOX_CONCURRENCY requests at a time (Graph
  allows 4 concurrent requests per app per mailbox) on the shared limiter;
  429/503 `Retry-After` is honoured by the gateway (a floor, never cut).
- Listing asks for the attachments' metadata in the same request ($expand),
  and fetching several messages by id uses $batch of up to 20.
- A Graph paging link is only ever followed if it points at GRAPH_API_BASE:
  the token must never be sent anywhere else.
- Every request asks for immutable ids (`Prefer: IdType="ImmutableId"`): a
  message keeps its id when it moves between folders, including from Drafts
  to Sent Items, which is how a send returns the sent message's id.

Sending. Graph's sendMail answers 202 with no body, so the id of what was
sent is unknown. With Mail.ReadWrite granted the hub instead creates a draft
from the MIME (POST /me/messages, immutable id), adds the files that did not
fit in the MIME, and sends the draft (POST /me/messages/{id}/send, 202): the
draft's immutable id is the sent message's id in Sent Items, and its
internetMessageId and conversationId are known before sending. (The copy
lands in Sent Items a moment after the 202, so a GET right away may 404.)
A connection with Mail.Send only falls back to sendMail: id "" and no files
above GRAPH_INLINE_ATTACHMENT_BYTES (403 naming Mail.ReadWrite).

Attachments. A request to Graph carries at most 4 MB, so files go inside the
MIME only while they add up to GRAPH_INLINE_ATTACHMENT_BYTES (3 MB; MIME is
base64). Above that, each file is added to the draft on its own: up to 3 MB
as a fileAttachment, larger through an upload session
(POST .../attachments/createUploadSession, then PUTs of
GRAPH_UPLOAD_CHUNK_BYTES, a multiple of 320 KiB under 4 MB, with
Content-Range) to the session's pre-authenticated uploadUrl, which gets no
Authorization header. Up to 150 MB per message (MAIL_MAX_ATTACHMENT_BYTES;
a tenant's own MaxSendSize, 35 MB by default in Exchange Online, may be
lower: Graph's error is passed on). A draft whose files failed to upload is
deleted, not left behind.
"""

import base64
import contextlib
import json
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
from django.conf import settings

from integrations import gateway, limiter, oauth
from integrations.errors import DomainError, PermanentError, error_from_http
from integrations.providers import HttpxAdapter, graph_base

from ..types import Attachment, Draft, Label, Message, Page, SyncResult
from . import NotFound

PROVIDER = "outlook"
BATCH_SIZE = 20  # Graph's $batch limit
SELECT = (
    "id,conversationId,subject,from,toRecipients,ccRecipients,bccRecipients,bodyPreview,receivedDateTime,"
    "isRead,flag,parentFolderId,categories,hasAttachments,internetMessageId"
)
EXPAND_ATTACHMENTS = "attachments($select=id,name,contentType,size)"


def base():
    return graph_base()


IMMUTABLE_IDS = {"Prefer": 'IdType="ImmutableId"'}


def _client(conn):
    return httpx.Client(
        base_url=base(),
        auth=oauth.bearer_auth(connection=conn),
        headers=IMMUTABLE_IDS,
        timeout=gateway.timeout_for(PROVIDER),
        trust_env=False,
    )


class GraphMailAdapter(HttpxAdapter):
    provider = PROVIDER
    vendor = "Microsoft Graph"


GRAPH = GraphMailAdapter()


def translate(response):
    """The hub's error for a Graph error answer (its `{"error": {code, message}}` body): 404 is NotFound."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    code, message = error.get("code"), error.get("message", "")
    if response.status_code == 404:
        return NotFound(PROVIDER, message or "not found", code=code, http_status=404)
    return error_from_http(
        PROVIDER,
        response.status_code,
        headers=dict(response.headers),
        code=code,
        message=message,
        request_id=response.headers.get("request-id"),
    )


def _call(conn, operation, method, url, *, expect_json=True, **kwargs):
    scope = f"mailbox:{conn.pk}"
    # A token refresh, if one is due, happens here and is its own call, not part of this one's latency.
    oauth.access_token(connection=conn)
    with (
        limiter.concurrency_slot(PROVIDER, scope, settings.GRAPH_MAILBOX_CONCURRENCY),
        GRAPH.attempt(operation, owner=conn.owner_id, scope=scope) as att,
        _client(conn) as client,
    ):
        response = client.request(method, url, **kwargs)
        att.record(
            http_status=response.status_code,
            request_id=response.headers.get("request-id"),
            units={"requests": 1},
        )
        if response.status_code >= 400:
            raise translate(response)
    if not expect_json:
        return response
    return response.json() if response.content else {}


def _follow(link):
    """A paging link from Graph, only if it points back at Graph (it carries our token)."""
    if not link.startswith(base() + "/"):
        raise DomainError(400, "invalid_page_token", "This page token does not belong to this mailbox.")
    return link[len(base()) :]


def encode_token(link):
    return base64.urlsafe_b64encode(link.encode()).decode().rstrip("=") if link else None


def decode_token(token):
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise DomainError(400, "invalid_page_token", "The page token is malformed.") from None


# --- Shapes ---------------------------------------------------------------------


def _address(item):
    address = (item or {}).get("emailAddress") or {}
    return {"name": address.get("name", ""), "email": address.get("address", "")}


def _date(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def message_from(resource, *, full=False):
    body = resource.get("body") or {}
    headers = {h["name"].lower(): h["value"] for h in resource.get("internetMessageHeaders") or []}
    if resource.get("internetMessageId"):
        headers.setdefault("message-id", resource["internetMessageId"])
    labels = [resource["parentFolderId"]] if resource.get("parentFolderId") else []
    labels += resource.get("categories") or []
    return Message(
        id=resource["id"],
        thread_id=resource.get("conversationId", ""),
        subject=resource.get("subject") or "",
        sender=_address(resource.get("from")),
        to=[_address(r) for r in resource.get("toRecipients") or []],
        cc=[_address(r) for r in resource.get("ccRecipients") or []],
        bcc=[_address(r) for r in resource.get("bccRecipients") or []],
        snippet=resource.get("bodyPreview") or "",
        date=_date(resource.get("receivedDateTime")),
        labels=labels,
        unread=not resource.get("isRead", True),
        starred=(resource.get("flag") or {}).get("flagStatus") == "flagged",
        attachments=[
            Attachment(
                id=a["id"], filename=a.get("name", ""), mime_type=a.get("contentType", ""), size=a.get("size", 0)
            )
            for a in resource.get("attachments") or []
        ],
        text=body.get("content") if full and body.get("contentType") == "text" else None,
        html=body.get("content") if full and body.get("contentType") == "html" else None,
        headers={k: headers[k] for k in ("message-id", "references", "in-reply-to") if k in headers},
        raw=resource,
    )


# --- Reading ----------------------------------------------------------------------


def list_page(conn, *, q="", label="", page_token="", page_size=50, filter_=""):
    if page_token:
        page = _call(conn, "messages.list", "GET", _follow(decode_token(page_token)))
    else:
        params = {"$top": page_size, "$select": SELECT, "$expand": EXPAND_ATTACHMENTS}
        if q:
            params["$search"] = f'"{q}"'  # $search cannot be combined with $orderby
        else:
            params["$orderby"] = "receivedDateTime desc"
        if filter_:
            params["$filter"] = filter_
        url = f"/me/mailFolders/{quote(label, safe='')}/messages" if label else "/me/messages"
        page = _call(conn, "messages.list", "GET", url, params=params)
    return Page(
        messages=[message_from(m) for m in page.get("value", [])],
        next_page_token=encode_token(page.get("@odata.nextLink", "")),
    )


def get_many(conn, ids):
    """Metadata of these messages by $batch requests of up to 20 (Graph's limit)."""
    found = {}
    for start in range(0, len(ids), BATCH_SIZE):
        chunk = ids[start : start + BATCH_SIZE]
        body = {
            "requests": [
                {
                    "id": str(n),
                    "method": "GET",
                    "url": f"/me/messages/{quote(i, safe='')}?$select={SELECT}&$expand={EXPAND_ATTACHMENTS}",
                }
                for n, i in enumerate(chunk)
            ]
        }
        answer = _call(conn, "messages.get.batch", "POST", "/$batch", json=body)
        for part in answer.get("responses", []):
            status = int(part.get("status", 500))
            if status == 404:
                continue  # deleted since it changed
            if status >= 400:
                # The batch as a whole failed for this page: retry it after the wait Graph asked for.
                raise error_from_http(
                    PROVIDER, status, headers=part.get("headers") or {}, message="a $batch part failed"
                )
            found[chunk[int(part["id"])]] = part["body"]
    return [message_from(found[i]) for i in ids if i in found]


def get(conn, message_id):
    params = {"$select": SELECT + ",body,internetMessageHeaders", "$expand": EXPAND_ATTACHMENTS}
    return message_from(
        _call(conn, "messages.get", "GET", f"/me/messages/{quote(message_id, safe='')}", params=params), full=True
    )


def thread(conn, thread_id):
    params = {
        "$filter": f"conversationId eq '{thread_id.replace(chr(39), chr(39) * 2)}'",
        "$select": SELECT + ",body,internetMessageHeaders",
        "$top": 50,
    }
    page = _call(conn, "threads.get", "GET", "/me/messages", params=params)
    messages = [message_from(m, full=True) for m in page.get("value", [])]
    # An undated message (a draft) first; the oldest aware moment, not the local one (before year 1 east of UTC).
    return sorted(messages, key=lambda m: m.date or datetime.min.replace(tzinfo=UTC))


def attachment(conn, message_id, attachment_id):
    url = f"/me/messages/{quote(message_id, safe='')}/attachments/{quote(attachment_id, safe='')}/$value"
    return _call(conn, "messages.attachments.get", "GET", url, expect_json=False).content


# --- Writing ----------------------------------------------------------------------


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
    with httpx.Client(timeout=gateway.timeout_for(PROVIDER), trust_env=False) as client:
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


def send(conn, message, *, thread_id="", attachments=()):
    """Send; the answer carries the sent message's id (see the module docstring for how)."""
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
    draft = _new_draft(conn, message, attachments)
    _call(conn, "drafts.send", "POST", f"/me/messages/{quote(draft['id'], safe='')}/send", expect_json=False)
    return Message(
        id=draft["id"],
        thread_id=draft.get("conversationId") or thread_id,
        headers={"message-id": draft.get("internetMessageId") or ""},
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
    from .. import mime

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


# --- Sync and push ------------------------------------------------------------------


def delta_sync(conn, *, delta_link=""):
    """Inbox changes since `delta_link` (all of the inbox without one); returns the next delta link as the cursor."""
    upserted, deleted = [], []
    if delta_link:
        url, params = _follow(delta_link), None
    else:
        url, params = "/me/mailFolders/inbox/messages/delta", {"$select": SELECT}
    while True:
        page = _call(conn, "messages.delta", "GET", url, params=params)
        for item in page.get("value", []):
            if "@removed" in item:
                deleted.append(item["id"])
            else:
                upserted.append(message_from(item))
        if page.get("@odata.nextLink"):
            url, params = _follow(page["@odata.nextLink"]), None
            continue
        return SyncResult(
            upserted=upserted, deleted=deleted, cursor=page.get("@odata.deltaLink", ""), full=not delta_link
        )


def subscribe(conn, *, notification_url, client_state, expires_at):
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": notification_url,
        "lifecycleNotificationUrl": notification_url,
        "resource": "me/mailFolders('inbox')/messages",
        "expirationDateTime": expires_at.isoformat(),
        "clientState": client_state,
    }
    result = _call(conn, "subscriptions.create", "POST", "/subscriptions", json=body)
    return result["id"], _date(result.get("expirationDateTime"))


def subscription_renew(conn, subscription_id, *, expires_at):
    result = _call(
        conn,
        "subscriptions.renew",
        "PATCH",
        f"/subscriptions/{quote(subscription_id, safe='')}",
        json={"expirationDateTime": expires_at.isoformat()},
    )
    return _date(result.get("expirationDateTime"))


def subscription_delete(conn, subscription_id):
    _call(
        conn, "subscriptions.delete", "DELETE", f"/subscriptions/{quote(subscription_id, safe='')}", expect_json=False
    )


_ = json
