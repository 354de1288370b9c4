"""Graph's message resources as the hub's Message."""

from datetime import datetime

from ...types import Attachment, Message


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
