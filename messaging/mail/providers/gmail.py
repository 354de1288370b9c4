"""Gmail over google-api-python-client: the only module that imports it.

- The service is built from the library's bundled discovery document (no
  discovery request) over google-auth-httplib2 with the connection's fresh
  token (integrations.oauth.google_credentials: no refresh token inside, so
  the library never refreshes behind the hub's lock). GMAIL_API_BASE points
  it (and the batch endpoint) at a local emulator.
- `execute(num_retries=0)` and httplib2.RETRIES = 1: the gateway and the
  Celery task base are the one retry loop.
- One wrapper: every request runs inside `GMAIL.attempt` (gateway.attempt),
  which translates googleapiclient's HttpError once (`translate`).
- Quota: every request is an attempt on the "gmail" limiter scope of the
  user, costing the method's quota units (GMAIL_QUOTA_UNITS); a batch costs
  the sum of its parts. ProviderCall.units carries {"quota_units": n}.
- Listing fetches metadata in batch requests of up to 50 (one HTTP request
  for 50 messages), never one request per message.
"""

import base64
import io
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import google_auth_httplib2
import httplib2
from django.conf import settings
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, MediaIoBaseUpload

from integrations import gateway, limiter, oauth
from integrations.errors import QuotaExceeded, RateLimited, error_from_http
from integrations.providers import ProviderAdapter

from .. import mime
from ..types import Attachment, Draft, Label, Message, Page, SyncResult
from . import NotFound

PROVIDER = "gmail"
BATCH_SIZE = 50  # Google's advice: batches above 50 get rate limited
METADATA_HEADERS = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "References", "In-Reply-To"]
# Quota units per method (developers.google.com/gmail/api/reference/quota).
UNITS = {
    "messages.list": 5,
    "messages.get": 5,
    "messages.send": 100,
    "messages.modify": 5,
    "messages.trash": 5,
    "messages.untrash": 5,
    "messages.attachments.get": 5,
    "threads.get": 10,
    "drafts.create": 10,
    "drafts.update": 15,
    "drafts.list": 5,
    "drafts.get": 5,
    "drafts.send": 100,
    "drafts.delete": 10,
    "labels.list": 1,
    "labels.create": 5,
    "labels.patch": 5,
    "labels.delete": 5,
    "history.list": 2,
    "getProfile": 1,
    "watch": 100,
    "stop": 50,
}
# 403s that Gmail uses for rate limits (retryable) and for exhausted quotas (not).
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "concurrentLimitExceeded"}
QUOTA_REASONS = {"dailyLimitExceeded", "quotaExceeded"}

httplib2.RETRIES = 1  # httplib2 retries a failed connection once by default; ours is the only retry loop


def _base():
    return settings.GMAIL_API_BASE.rstrip("/") if settings.GMAIL_API_BASE else ""


def _service(conn):
    creds = oauth.google_credentials(connection=conn)
    raw_http = httplib2.Http(timeout=gateway.timeout_for(PROVIDER))
    # A resumable upload answers 308 between chunks: not a redirect (googleapiclient's build_http does the same).
    raw_http.redirect_codes = raw_http.redirect_codes - {308}
    http = google_auth_httplib2.AuthorizedHttp(creds, http=raw_http)
    options = {"api_endpoint": _base() + "/"} if _base() else None
    return build("gmail", "v1", http=http, client_options=options, static_discovery=True, cache_discovery=False)


def _batch_uri():
    return f"{_base() or 'https://gmail.googleapis.com'}/batch/gmail/v1"


def _reason(content):
    try:
        import json

        error = json.loads(content).get("error", {})
    except (ValueError, AttributeError):
        return "", ""
    errors = error.get("errors") or [{}]
    return errors[0].get("reason", "") or error.get("status", ""), error.get("message", "")


def translate(resp, content):
    status = int(resp.status)
    reason, message = _reason(content)
    headers = dict(resp)
    if status == 404:
        return NotFound(PROVIDER, message or "not found", code="notFound", http_status=404)
    if reason in QUOTA_REASONS:
        return QuotaExceeded(PROVIDER, message or reason, code=reason, http_status=status)
    if status == 403 and reason in RATE_REASONS:
        status = 429  # Gmail says 403 for per-user rate limits: the same thing as a 429 to us
    return error_from_http(PROVIDER, status, headers=headers, code=reason or None, message=message)


class GmailAdapter(ProviderAdapter):
    provider = PROVIDER
    sdk_errors = (HttpError,)

    def translate(self, exc):
        return translate(exc.resp, exc.content)


GMAIL = GmailAdapter()


def _project_budget(cost):
    """The per-project daily units, shared by every user (the gateway's own bucket is the user's)."""
    decision = limiter.take(PROVIDER, "project", cost=cost)
    if not decision.granted:
        raise RateLimited(PROVIDER, "project", decision.wait)


def _call(conn, operation, request, *, units=None):
    cost = units if units is not None else UNITS[operation]
    _project_budget(cost)
    with GMAIL.attempt(operation, owner=conn.owner_id, scope=f"user:{conn.pk}", rate_cost=cost) as att:
        result = request.execute(num_retries=0)
        att.record(http_status=200, units={"quota_units": cost, "requests": 1})
    return result


def _batch(conn, operation, requests, unit_each):
    """{request id: result} for [(id, HttpRequest)], in batch HTTP requests of up to 50."""
    results, failures = {}, []

    def collect(request_id, response, exception):
        if exception is None:
            results[request_id] = response
        elif isinstance(exception, HttpError) and int(exception.resp.status) == 404:
            pass  # deleted since it was listed
        else:
            failures.append(exception)

    for start in range(0, len(requests), BATCH_SIZE):
        chunk = requests[start : start + BATCH_SIZE]
        batch = BatchHttpRequest(callback=collect, batch_uri=_batch_uri())
        for request_id, request in chunk:
            batch.add(request, request_id=request_id)
        cost = unit_each * len(chunk)
        _project_budget(cost)
        with GMAIL.attempt(f"{operation}.batch", owner=conn.owner_id, scope=f"user:{conn.pk}", rate_cost=cost) as att:
            batch.execute()
            att.record(http_status=200, units={"quota_units": cost, "requests": 1, "parts": len(chunk)})
            if failures:
                # One rate-limited part fails the attempt: the whole page is retried after the wait.
                raise failures[0]
    return results


# --- Shapes ---------------------------------------------------------------------


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


# --- Reading ----------------------------------------------------------------------


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


def get_many(conn, ids, *, svc=None):
    """Metadata of these messages, in the order given, by batch requests of up to 50."""
    svc = svc or _service(conn)
    ids = list(dict.fromkeys(ids))  # a batch refuses two parts with one id
    requests = [
        (i, svc.users().messages().get(userId="me", id=i, format="metadata", metadataHeaders=METADATA_HEADERS))
        for i in ids
    ]
    found = _batch(conn, "messages.get", requests, UNITS["messages.get"])
    return [message_from(found[i]) for i in ids if i in found]


def get(conn, message_id):
    svc = _service(conn)
    return message_from(
        _call(conn, "messages.get", svc.users().messages().get(userId="me", id=message_id, format="full")), full=True
    )


def thread(conn, thread_id):
    svc = _service(conn)
    resource = _call(conn, "threads.get", svc.users().threads().get(userId="me", id=thread_id, format="full"))
    return [message_from(m, full=True) for m in resource.get("messages", [])]


def attachment(conn, message_id, attachment_id):
    svc = _service(conn)
    resource = _call(
        conn,
        "messages.attachments.get",
        svc.users().messages().attachments().get(userId="me", messageId=message_id, id=attachment_id),
    )
    return _decode(resource.get("data", ""))


# --- Writing ----------------------------------------------------------------------


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


def send(conn, message, *, thread_id="", attachments=()):
    svc = _service(conn)
    request = _message_request(svc.users().messages().send, message, thread_id=thread_id)
    sent = _call(conn, "messages.send", request)
    return Message(id=sent["id"], thread_id=sent.get("threadId", ""), labels=sent.get("labelIds", []))


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


# --- Sync and push ------------------------------------------------------------------


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
    body = {"topicName": topic, "labelIds": ["INBOX"], "labelFilterBehavior": "INCLUDE"}
    result = _call(conn, "watch", svc.users().watch(userId="me", body=body))
    expires = datetime.fromtimestamp(int(result["expiration"]) / 1000, tz=UTC) if result.get("expiration") else None
    return str(result.get("historyId", "")), expires


def stop(conn):
    svc = _service(conn)
    _call(conn, "stop", svc.users().stop(userId="me"))
