"""Sync and push: the inbox delta query, change-notification subscriptions."""

from urllib.parse import quote

from integrations.errors import PermanentError
from integrations.webhooks.graph import subscriptions_to as graph_subscriptions_to

from ...types import SyncResult
from .client import SELECT, _call, _follow
from .reading import get_many
from .shapes import _date, message_from


def delta_sync(conn, *, delta_link=""):
    """Inbox changes since `delta_link` (all of the inbox without one); returns the next delta link as the cursor.

    A message whose read state or flag changed may come with those properties alone (id, isRead, parentFolderId),
    whatever $select asked: such a message is read again as the list reads it (get_many), or the cache would
    keep it without subject, sender or date. So is a message with `hasAttachments`: the delta query is not asked
    to expand its attachments (Graph ignores the $select inside such an $expand on a delta, and would answer
    every file's contentBytes), and cached from the delta item alone it would list no files where Graph's own
    list names them.

    Graph answers 410 Gone (syncStateNotFound / resyncRequired) to a delta link whose sync state it no longer
    keeps (Outlook evicts old ones): the sync starts over without it, a full sync (`full=True`).
    """
    if delta_link:
        try:
            return _delta(conn, delta_link)
        except PermanentError as exc:
            if exc.http_status != 410:
                raise
    return _delta(conn, "")


def _delta(conn, delta_link):
    upserted, deleted, partial, folder_id = [], [], [], ""
    if delta_link:
        url, params = _follow(delta_link), None
    else:
        url, params = "/me/mailFolders/inbox/messages/delta", {"$select": SELECT}
    while True:
        page = _call(conn, "messages.delta", "GET", url, params=params)
        for item in page.get("value", []):
            if "@removed" in item:
                deleted.append(item["id"])
                continue
            folder_id = item.get("parentFolderId") or folder_id  # every message the inbox's delta names is in it
            if "receivedDateTime" not in item or (item.get("hasAttachments") and "attachments" not in item):
                partial.append(item["id"])  # the changed properties alone, or files not named
            else:
                upserted.append(message_from(item))
        if page.get("@odata.nextLink"):
            url, params = _follow(page["@odata.nextLink"]), None
            continue
        # One missing now was deleted or moved out of the inbox since: the next delta says so.
        upserted += get_many(conn, list(dict.fromkeys(partial))) if partial else []
        return SyncResult(
            upserted=upserted,
            deleted=deleted,
            cursor=page.get("@odata.deltaLink", ""),
            full=not delta_link,
            folder_id=folder_id,
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


def subscriptions_to(conn, notification_url):
    """The ids of the subscriptions this app holds for this user (what GET /subscriptions answers a delegated
    token) whose notifications go to `notification_url`. Graph leaves their clientState out (null)."""
    return graph_subscriptions_to(
        lambda link: _call(conn, "subscriptions.list", "GET", _follow(link) if "://" in link else link),
        notification_url,
    )


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
