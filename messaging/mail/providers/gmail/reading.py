"""Reading: a page of messages (metadata by batch), one message, a thread, an attachment's bytes."""

from integrations.errors import PermanentError

from ...types import Page
from .client import METADATA_HEADERS, UNITS, _batch, _call, _service
from .shapes import _decode, message_from


def list_page(conn, *, q="", label="", page_token="", page_size=50):
    svc = _service(conn)
    kwargs = {"userId": "me", "maxResults": page_size}
    if q:
        kwargs["q"] = q
    if label:
        kwargs["labelIds"] = [label]
    if page_token:
        kwargs["pageToken"] = page_token
    listed = _call(conn, "messages.list", svc.users().messages().list(**kwargs))
    ids = [m["id"] for m in listed.get("messages", [])]
    return Page(messages=get_many(conn, ids, svc=svc), next_page_token=listed.get("nextPageToken"))


def _part_fields(depth):
    inner = f",parts({_part_fields(depth - 1)})" if depth > 1 else ""
    return f"partId,mimeType,filename,body(attachmentId,size){inner}"


# format=metadata answers "only email message ID, labels, and email headers": no parts, so no attachment was ever
# listed or cached, and every download was named "attachment" (application/octet-stream). format=full costs the
# same 5 units; this partial response keeps its part tree (names, types, sizes, attachment ids) without any body.
LIST_FIELDS = f"id,threadId,labelIds,snippet,historyId,internalDate,payload(headers,{_part_fields(5)})"


_KEPT_HEADERS = {h.lower() for h in METADATA_HEADERS}


def _listed(resource):
    """A listed message as the cache keeps it: format=full answers every header (Received lines with the
    senders' servers and addresses, authentication results, ...), of which a list needs the few that
    format=metadata asked for."""
    payload = resource.get("payload") or {}
    payload["headers"] = [h for h in payload.get("headers") or [] if h.get("name", "").lower() in _KEPT_HEADERS]
    return resource


def get_many(conn, ids, *, svc=None):
    """Metadata of these messages (headers, labels, attachments), in the order given, by batch requests of up to 50."""
    svc = svc or _service(conn)
    ids = list(dict.fromkeys(ids))  # a batch refuses two parts with one id
    requests = [(i, svc.users().messages().get(userId="me", id=i, format="full", fields=LIST_FIELDS)) for i in ids]
    found = _batch(conn, "messages.get", requests, UNITS["messages.get"])
    return [message_from(_listed(found[i])) for i in ids if i in found]


def get(conn, message_id):
    svc = _service(conn)
    return message_from(
        _call(conn, "messages.get", svc.users().messages().get(userId="me", id=message_id, format="full")), full=True
    )


def thread(conn, thread_id):
    svc = _service(conn)
    resource = _call(conn, "threads.get", svc.users().threads().get(userId="me", id=thread_id, format="full"))
    return [message_from(m, full=True) for m in resource.get("messages", [])]


def attachment(conn, message_id, attachment_id, *, part_id=""):
    """An attachment's bytes. Gmail's attachment id is a token that changes between reads of the message and
    lapses (attachments.get then answers 400 "Invalid attachment token", or 404): for a file whose part the hub
    knows (`part_id`, cached when the message was listed) a fresh read of the message gives that part's current
    id, which is downloaded instead. An id the hub never listed is not guessed at."""
    svc = _service(conn)
    try:
        return _attachment_bytes(conn, svc, message_id, attachment_id)
    except PermanentError as exc:
        if not part_id or exc.http_status not in (400, 404):
            raise
        current = _part_attachment_id(conn, svc, message_id, part_id)
        if not current or current == attachment_id:
            raise
    return _attachment_bytes(conn, svc, message_id, current)


def _attachment_bytes(conn, svc, message_id, attachment_id):
    resource = _call(
        conn,
        "messages.attachments.get",
        svc.users().messages().attachments().get(userId="me", messageId=message_id, id=attachment_id),
    )
    return _decode(resource.get("data", ""))


def _part_attachment_id(conn, svc, message_id, part_id):
    """The attachment id Gmail gives the part `part_id` now (a read of the part tree, no bodies), or ""."""
    fields = f"payload({_part_fields(5)})"
    request = svc.users().messages().get(userId="me", id=message_id, format="full", fields=fields)
    stack = [(_call(conn, "messages.get", request).get("payload") or {})]
    while stack:
        part = stack.pop()
        if part.get("partId") == part_id:
            return (part.get("body") or {}).get("attachmentId", "")
        stack.extend(part.get("parts") or [])
    return ""


def attachment_meta(conn, message_id, attachment_id):
    """None: Gmail answers an attachment's bytes only, and the attachmentId it gives a part can differ between
    reads of the message, so a fresh read need not find the part by the id the client holds."""
    return None
