"""Sync and push: full sync, history since a historyId, the Pub/Sub watch."""

from datetime import UTC, datetime

from ...types import SyncResult
from .client import _call, _service
from .reading import get_many


def full_sync(conn, *, limit):
    """The newest `limit` messages and the historyId to continue from (read before listing, so nothing slips)."""
    svc = _service(conn)
    profile = _call(conn, "getProfile", svc.users().getProfile(userId="me"))
    ids, token = [], None
    while len(ids) < limit:
        kwargs = {"userId": "me", "maxResults": min(500, limit - len(ids))}
        if token:
            kwargs["pageToken"] = token
        listed = _call(conn, "messages.list", svc.users().messages().list(**kwargs))
        ids.extend(m["id"] for m in listed.get("messages", []))
        token = listed.get("nextPageToken")
        if not token:
            break
    return SyncResult(upserted=get_many(conn, ids, svc=svc), cursor=str(profile.get("historyId", "")), full=True)


def history_sync(conn, *, start_history_id):
    """Changes since `start_history_id`; NotFound when Gmail no longer has that history (a full sync is due)."""
    svc = _service(conn)
    changed, deleted, token, latest = [], set(), None, start_history_id
    while True:
        kwargs = {"userId": "me", "startHistoryId": start_history_id}
        if token:
            kwargs["pageToken"] = token
        page = _call(conn, "history.list", svc.users().history().list(**kwargs))
        for record in page.get("history", []):
            for item in record.get("messagesDeleted", []):
                deleted.add(item["message"]["id"])
            for key in ("messagesAdded", "labelsAdded", "labelsRemoved"):
                for item in record.get(key, []):
                    changed.append(item["message"]["id"])
        latest = str(page.get("historyId") or latest)
        token = page.get("nextPageToken")
        if not token:
            break
    ids = [i for i in dict.fromkeys(changed) if i not in deleted]
    return SyncResult(upserted=get_many(conn, ids, svc=svc), deleted=sorted(deleted), cursor=latest)


def watch(conn, *, topic):
    svc = _service(conn)
    # No labelIds: Gmail then pushes every change (users.watch). The cache answers every label from the same
    # history sync (services.reading._cache_holds); a watch on INBOX alone left a change under any other label
    # (a message sent, filed past the inbox, labelled) out of it until the next inbox push or the cache went
    # stale (MAIL_CACHE_FRESH_SECONDS).
    body = {"topicName": topic}
    result = _call(conn, "watch", svc.users().watch(userId="me", body=body))
    expires = datetime.fromtimestamp(int(result["expiration"]) / 1000, tz=UTC) if result.get("expiration") else None
    return str(result.get("historyId", "")), expires


def stop(conn):
    svc = _service(conn)
    _call(conn, "stop", svc.users().stop(userId="me"))
