"""Gmail's message resources as the hub's Message."""

import base64
from datetime import UTC, datetime

from ... import mime
from ...types import Attachment, Message


def _headers(payload):
    return {h["name"].lower(): h["value"] for h in (payload or {}).get("headers", [])}


def _decode(data):
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)) if data else b""


def _walk(part, found):
    mime_type = part.get("mimeType", "")
    body = part.get("body") or {}
    if part.get("filename"):
        found["attachments"].append(
            Attachment(
                id=body.get("attachmentId", ""),
                filename=part["filename"],
                mime_type=mime_type,
                size=int(body.get("size") or 0),
                part_id=part.get("partId", ""),
            )
        )
    elif mime_type == "text/plain" and found["text"] is None and "data" in body:
        found["text"] = _decode(body["data"]).decode("utf-8", "replace")
    elif mime_type == "text/html" and found["html"] is None and "data" in body:
        found["html"] = _decode(body["data"]).decode("utf-8", "replace")
    for child in part.get("parts") or []:
        _walk(child, found)


def message_from(resource, *, full=False):
    payload = resource.get("payload") or {}
    headers = _headers(payload)
    found = {"attachments": [], "text": None, "html": None}
    _walk(payload, found)
    labels = resource.get("labelIds") or []
    internal = resource.get("internalDate")
    return Message(
        id=resource["id"],
        thread_id=resource.get("threadId", ""),
        subject=headers.get("subject", ""),
        sender=mime.address(headers.get("from")),
        to=mime.addresses(headers.get("to")),
        cc=mime.addresses(headers.get("cc")),
        snippet=resource.get("snippet", ""),
        date=datetime.fromtimestamp(int(internal) / 1000, tz=UTC) if internal else None,
        labels=labels,
        unread="UNREAD" in labels,
        starred="STARRED" in labels,
        attachments=found["attachments"],
        text=found["text"] if full else None,
        html=found["html"] if full else None,
        headers={k: headers[k] for k in ("message-id", "references", "in-reply-to") if k in headers},
        raw=resource,
    )
