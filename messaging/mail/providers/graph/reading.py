"""Reading: list, fetch by ids ($batch), one message, a thread, an attachment's bytes."""

from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from integrations.errors import error_from_http

from ...types import Attachment, Page
from .. import NotFound
from .client import BATCH_SIZE, EXPAND_ATTACHMENTS, PROVIDER, SELECT, _call, _follow, decode_token, encode_token
from .shapes import message_from

# Graph refuses a $filter beside $orderby (InefficientFilter) unless each ordered property also leads the filter
# (Microsoft's "Update to filtering and sorting"): this clause, true of every message, puts receivedDateTime first.
ORDERED_FIRST = "receivedDateTime ge 1900-01-01T00:00:00Z"


def _search_phrase(q):
    """q as Graph's $search value: one OData search phrase, in double quotes, inside which a `"` or a `\\` is
    escaped by a backslash (OData ABNF, qchar-no-AMP-DQUOTE); Graph reads the KQL within (subject:"Q3 plan")
    unescaped. Left as typed, a quote or backslash was a syntax error at Graph (400)."""
    return '"' + q.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _odata_string(value):
    return "'" + value.replace("'", "''") + "'"


def list_page(conn, *, q="", label="", page_token="", page_size=50, filter_="", leave_out_folders=()):
    """A page of one folder (`label`) or of every folder but `leave_out_folders` (GET /me/messages).

    The folders are left out by $filter where Graph takes one; $search takes neither $filter nor $orderby, so a
    search's pages (and a link followed from before the filter) drop their messages here instead, a page then
    holding fewer than `page_size`."""
    if page_token:
        link = _follow(decode_token(page_token))
        everywhere = urlsplit(link).path == "/me/messages"
        page = _call(conn, "messages.list", "GET", link)
    else:
        everywhere = not label
        params = {"$top": page_size, "$select": SELECT, "$expand": EXPAND_ATTACHMENTS}
        if q:
            params["$search"] = _search_phrase(q)  # $search cannot be combined with $orderby
            if filter_:
                params["$filter"] = filter_
        else:
            params["$orderby"] = "receivedDateTime desc"
            clauses = [f"({filter_})"] if filter_ else []
            if everywhere:
                clauses += [f"parentFolderId ne {_odata_string(f)}" for f in leave_out_folders]
            if clauses:
                params["$filter"] = " and ".join([ORDERED_FIRST, *clauses])
        url = f"/me/mailFolders/{quote(label, safe='')}/messages" if label else "/me/messages"
        page = _call(conn, "messages.list", "GET", url, params=params)
    left_out = set(leave_out_folders) if everywhere else set()
    return Page(
        messages=[message_from(m) for m in page.get("value", []) if m.get("parentFolderId") not in left_out],
        next_page_token=encode_token(page.get("@odata.nextLink", "")),
    )


def folder_ids(conn, names):
    """The ids of these folders, by Graph's well-known names (deleteditems, junkemail): a message names its folder
    by id (parentFolderId), never by that name. A folder this mailbox does not have (404) is left out."""
    found = []
    for name in names:
        try:
            folder = _call(
                conn, "folders.get", "GET", f"/me/mailFolders/{quote(name, safe='')}", params={"$select": "id"}
            )
        except NotFound:
            continue
        found.append(folder["id"])
    return found


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


def attachment(conn, message_id, attachment_id, *, part_id=""):
    """An attachment's bytes (Graph's attachment ids are stable: `part_id` is Gmail's concern)."""
    url = f"/me/messages/{quote(message_id, safe='')}/attachments/{quote(attachment_id, safe='')}/$value"
    return _call(conn, "messages.attachments.get", "GET", url, expect_json=False).content


def attachment_meta(conn, message_id, attachment_id):
    """An attachment's name, type and size (not its bytes): for a message the cache does not hold with it."""
    url = f"/me/messages/{quote(message_id, safe='')}/attachments/{quote(attachment_id, safe='')}"
    a = _call(conn, "messages.attachments.get", "GET", url, params={"$select": "id,name,contentType,size"})
    return Attachment(
        id=a.get("id") or attachment_id,
        filename=a.get("name") or "",
        mime_type=a.get("contentType") or "",
        size=a.get("size") or 0,
    )
