"""Gmail's one call path: the service, quota units, error translation, one request (or batch) = one attempt."""

import google_auth_httplib2
from django.conf import settings
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from integrations import gateway, google_http, limiter, oauth
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


def _base():
    return settings.GMAIL_API_BASE.rstrip("/") if settings.GMAIL_API_BASE else ""


def _service(conn):
    creds = oauth.google_credentials(connection=conn)
    # Sends a message once: a dropped connection is the attempt's error (see google_http.OneSendHttp).
    raw_http = google_http.http(timeout=gateway.timeout_for(PROVIDER))
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
