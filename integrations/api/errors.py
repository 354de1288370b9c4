"""One JSON error shape for the whole API: {"error": code, "detail": sentence, ...}."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
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


def exception_handler(exc, context):
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


def api_not_found(request, *args, **kwargs):
    return JsonResponse(
        {"error": "not_found", "detail": f"No API endpoint at {request.path}; see /api/docs/."},
        status=status.HTTP_404_NOT_FOUND,
    )


def handler404(request, exception=None):
    if _wants_json(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def handler500(request):
    if _wants_json(request):
        return JsonResponse(
            {
                "error": "server_error",
                "detail": "The hub failed on this request; it is logged with the X-Request-ID shown in the response headers.",
            },
            status=500,
        )
    return defaults.server_error(request)
