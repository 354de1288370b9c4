"""Gmail's one call path: the service, quota units, error translation, one request (or batch) = one attempt."""

import google_auth_httplib2
import httplib2
from django.conf import settings
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from integrations import gateway, limiter, oauth
from integrations.errors import GOOGLE_RATE_REASONS, QuotaExceeded, RateLimited, error_from_http, google_reason
from integrations.providers import ProviderAdapter

from .. import NotFound

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
RATE_REASONS = GOOGLE_RATE_REASONS | {"concurrentLimitExceeded"}
QUOTA_REASONS = {"dailyLimitExceeded", "quotaExceeded"}

httplib2.RETRIES = 1  # httplib2 retries a failed connection once by default; ours is the only retry loop


class _OneSendHttp(httplib2.Http):
    """An httplib2.Http that sends a request that changes something (POST, PUT, PATCH, DELETE) exactly once.

    When the answer's status line never arrives (the server closed the connection: RemoteDisconnected),
    httplib2 sends the request again "regardless of the number of RETRIES set", taking the connection for a
    stale kept-alive one. For messages.send that is a second message to the recipient whenever Gmail had
    accepted the first. Here the dropped connection is the attempt's error instead: the gateway classifies
    it as retryable, and a retried send looks its Message-ID up in Sent first (services.writing). Reads keep
    httplib2's stale-connection retry: sending a GET twice changes nothing.
    """

    def _conn_request(self, conn, request_uri, method, body, headers):
        if method in ("GET", "HEAD"):
            return super()._conn_request(conn, request_uri, method, body, headers)
        try:
            if conn.sock is None:
                conn.connect()
            conn.request(method, request_uri, body, headers)
            response = conn.getresponse()
            content = response.read()
        except BaseException:
            conn.close()
            raise
        response = httplib2.Response(response)
        return response, httplib2._decompressContent(response, content, self.limit_kwargs)


def _base():
    return settings.GMAIL_API_BASE.rstrip("/") if settings.GMAIL_API_BASE else ""


def _service(conn):
    creds = oauth.google_credentials(connection=conn)
    raw_http = _OneSendHttp(timeout=gateway.timeout_for(PROVIDER))
    # A resumable upload answers 308 between chunks: not a redirect (googleapiclient's build_http does the same).
    raw_http.redirect_codes = raw_http.redirect_codes - {308}
    http = google_auth_httplib2.AuthorizedHttp(creds, http=raw_http)
    options = {"api_endpoint": _base() + "/"} if _base() else None
    return build("gmail", "v1", http=http, client_options=options, static_discovery=True, cache_discovery=False)


def _batch_uri():
    return f"{_base() or 'https://gmail.googleapis.com'}/batch/gmail/v1"


def translate(resp, content):
    status = int(resp.status)
    reason, message = google_reason(content)
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
