"""One JSON error shape for the whole API: {"error": code, "detail": sentence, ...}."""

import logging
import sys

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core import signals
from django.core.exceptions import (
    BadRequest,
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponsePermanentRedirect, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.log import log_response
from django.views import csrf as csrf_views
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from integrations.errors import DomainError, ProviderError

logger = logging.getLogger(__name__)

_DEFAULT_DETAILS = {
    "not_authenticated": "Authentication credentials were not provided; send `Authorization: Token <token>`.",
    "authentication_failed": "The credentials are invalid; get a token from POST /api/v1/auth/token/.",
    "permission_denied": "You do not have permission to do this.",
    "not_found": "Nothing here; check the URL and that the object is yours.",
}


def default_detail(code):
    """The sentence the API answers `code` (not_authenticated, ...) with when nothing more particular is said."""
    return _DEFAULT_DETAILS[code]


def _first_message(detail):
    if isinstance(detail, dict):
        for key, value in detail.items():
            msg = _first_message(value)
            return msg if key == "non_field_errors" else f"{key}: {msg}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def domain_error_response(exc):
    """The JSON response for a DomainError (also used outside DRF views)."""
    response = JsonResponse(exc.as_dict(), status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    return response


# Seconds a client is told to wait when the database or Redis is unreachable.
OUTAGE_RETRY_AFTER = 5


def dependency_outage(exc):
    """A 503 DomainError for a database, Redis or broker outage (`exc` is what the driver raised), else None."""
    import kombu.exceptions
    import redis.exceptions
    from django.db import InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError):
        which = "database"
    elif isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        which = "cache"
    elif isinstance(exc, kombu.exceptions.OperationalError):
        which = "task queue"
    else:
        return None
    # The reason (host, port, driver message) goes to the log, never to the client.
    logger.error("dependency outage: %s unavailable", which, exc_info=exc)
    return DomainError(
        503,
        "service_unavailable",
        f"The hub's {which} is unavailable right now; retry in {OUTAGE_RETRY_AFTER} seconds.",
        headers={"Retry-After": str(OUTAGE_RETRY_AFTER)},
        retry_after=OUTAGE_RETRY_AFTER,
    )


def exception_handler(exc, context):
    exc = dependency_outage(exc) or exc
    if isinstance(exc, ProviderError):
        exc = exc.as_api_error()
    if isinstance(exc, DomainError):
        return domain_error_response(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: Django's handler500 answers JSON under /api/

    if isinstance(exc, exceptions.ValidationError):
        body = {
            "error": "invalid",
            "detail": f"The request is invalid: {_first_message(exc.detail)}",
            "fields": exc.detail,
        }
    elif isinstance(exc, exceptions.Throttled):
        body = {
            "error": "rate_limited",
            "detail": f"Too many requests; retry in {exc.wait:.0f} seconds." if exc.wait else "Too many requests.",
        }
        if exc.wait is not None:
            body["retry_after"] = int(exc.wait + 0.999)
            response["Retry-After"] = str(body["retry_after"])
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        detail = exc.detail if isinstance(exc.detail, str) else _first_message(exc.detail)
        if code in _DEFAULT_DETAILS and str(detail) == str(exc.default_detail):
            detail = _DEFAULT_DETAILS[code]
        body = {"error": code, "detail": str(detail)}
    response.data = body
    return response


def _wants_json(request):
    return request.path.startswith(("/api/", "/webhooks/"))


def _with_slash(path):
    """Whether `path` + "/" is one of the hub's own routes (every API and webhook URL ends with a slash)."""
    from django.urls import Resolver404, resolve

    if path.endswith("/"):
        return False
    try:
        return resolve(path + "/").func is not api_not_found
    except Resolver404:
        return False


@csrf_exempt  # a 404 is the answer whatever the method; a CSRF 403 would hide it
def api_not_found(request, *args, **kwargs):
    detail = f"No API endpoint at {request.path}; see /api/docs/."
    if _with_slash(request.path_info):
        # Not a redirect: a POST redirected loses its body (and under DEBUG, CommonMiddleware raised instead).
        detail = f"No API endpoint at {request.path}; the URL ends with a slash: {request.path}/"
    return JsonResponse({"error": "not_found", "detail": detail}, status=status.HTTP_404_NOT_FOUND)


@csrf_exempt
def slash_missing(request, *args, **kwargs):
    """A /webhooks URL without its final slash: GET and HEAD redirect as CommonMiddleware does; any other method
    is the JSON 404 naming the slashed URL (a redirected POST would arrive without its body)."""
    if request.method in ("GET", "HEAD"):
        return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    return api_not_found(request)


def handler404(request, exception=None):
    if _wants_json(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def _json_error(status_code, code, detail):
    return JsonResponse({"error": code, "detail": detail}, status=status_code)


def handler400(request, exception=None):
    """Django's SuspiciousOperation family (oversized body, bad Host, too many fields) as the JSON error shape."""
    if not _wants_json(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return _json_error(
            413, "payload_too_large", f"The body exceeds {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes, the API's limit."
        )
    if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
        return _json_error(400, "too_many_fields", "The request has too many form fields or files.")
    if isinstance(exception, DisallowedHost):
        return _json_error(400, "bad_host", "The Host header names a host this hub does not serve.")
    return _json_error(400, "bad_request", "The request is malformed.")


def handler403(request, exception=None):
    if _wants_json(request):
        return _json_error(403, "permission_denied", _DEFAULT_DETAILS["permission_denied"])
    return defaults.permission_denied(request, exception)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: a session-authenticated write without its CSRF token."""
    if _wants_json(request):
        return _json_error(
            403,
            "csrf_failed",
            f"CSRF check failed ({reason}). Session requests must send the X-CSRFToken header; "
            "API clients should use `Authorization: Token <key>` instead of a session cookie.",
        )
    return csrf_views.csrf_failure(request, reason)


def handler500(request):
    # Django calls this while handling the exception, so it is still in sys.exc_info(): a
    # database or Redis outage outside DRF (webhooks, plain views) becomes a 503 + Retry-After.
    return _server_error(request, sys.exc_info()[1])


def _server_error(request, exc):
    outage = dependency_outage(exc)
    if outage is not None and _wants_json(request):
        return domain_error_response(outage)
    if _wants_json(request):
        return JsonResponse(
            {
                "error": "server_error",
                "detail": "The hub failed on this request; it is logged with the X-Request-ID shown in the response headers.",
            },
            status=500,
        )
    return defaults.server_error(request)


def debug_error_response(request, exc):
    """With DEBUG on, what the API answers for `exc` under /api/ and /webhooks/: what it answers with DEBUG off.

    Django shows its HTML debug page for an Http404, a bad request and an uncaught exception whenever DEBUG is
    on, before handler404/handler400/handler500 are asked, and `make run` runs with DEBUG on: the API's clients
    got HTML where the contract promises the JSON error shape. This answers through the same handlers, logged
    and signalled as Django does (django.request with the traceback, got_request_exception for error reporters
    and the test client). None, so Django's own handling goes on, when DEBUG is off (the handlers already
    answer), for any other path (admin and the landing page keep the debug pages), and for what Django
    answers through the handlers even under DEBUG.
    """
    if not settings.DEBUG or settings.DEBUG_PROPAGATE_EXCEPTIONS or not _wants_json(request):
        return None
    if isinstance(exc, DjangoPermissionDenied | MultiPartParserError):
        return None
    if isinstance(exc, Http404):
        return handler404(request, exc)
    if isinstance(exc, BadRequest | SuspiciousOperation):
        if isinstance(exc, RequestDataTooBig | TooManyFieldsSent | TooManyFilesSent):
            request._mark_post_parse_error()  # as Django does: reading POST again would raise again
        response = handler400(request, exc)
        if isinstance(exc, SuspiciousOperation):
            security_logger = logging.getLogger(f"django.security.{exc.__class__.__name__}")
            log_response(
                str(exc), exception=exc, request=request, response=response, level="error", logger=security_logger
            )
        else:
            log_response("%s: %s", str(exc), request.path, response=response, request=request, exception=exc)
        return response
    signals.got_request_exception.send(sender=None, request=request)
    response = _server_error(request, exc)
    log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request, exception=exc)
    return response


class JsonErrorsUnderDebugMiddleware:
    """debug_error_response for exceptions raised by views in the full chain (the webhook fast path calls it
    itself). Sync and async alike, so an async view under ASGI is not pushed through a thread for it; with
    DEBUG off it only passes requests on."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        return debug_error_response(request, exception)
