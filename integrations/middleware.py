import functools
import logging
import time

import csp.middleware
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .context import clean_request_id, open_response_scope, reset_request_id, reset_response_scope, set_request_id

access_log = logging.getLogger("hub.access")


class RequestIdMiddleware:
    """Take X-Request-ID from the caller (or make one), log with it, echo it back.

    It also writes the access log line (`hub.access`): the server's own access
    log runs outside Django and cannot know the request id. Sync and async
    alike, so an async view under ASGI is not pushed through a thread for it.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        request_id, token, started = self._begin(request)
        scope, scope_token = open_response_scope()
        try:
            response = self.get_response(request)
            self._end(request, response, request_id, started, scope)
        except BaseException:
            scope.run()
            raise
        finally:
            reset_response_scope(scope_token)
            reset_request_id(token)
        return response

    async def _acall(self, request):
        request_id, token, started = self._begin(request)
        scope, scope_token = open_response_scope()
        try:
            response = await self.get_response(request)
            self._end(request, response, request_id, started, scope)
        except BaseException:
            await sync_to_async(scope.run)()
            raise
        finally:
            reset_response_scope(scope_token)
            reset_request_id(token)
        return response

    @staticmethod
    def _begin(request):
        # From META, not request.headers: building that mapping of every header cost a webhook delivery
        # ~13 us, and neither this nor the inbox needs more than a header or three.
        request_id = clean_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        return request_id, set_request_id(request_id), time.perf_counter()

    @staticmethod
    def _end(request, response, request_id, started, scope):
        response["X-Request-ID"] = request_id
        # Work left for after the answer (integrations.context.after_response) runs when the
        # server closes the response, after sending it.
        response._resource_closers.append(scope.run)
        if settings.ACCESS_LOG:
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={"status": response.status_code, "duration_ms": round((time.perf_counter() - started) * 1000, 1)},
            )


class CSPMiddleware(csp.middleware.CSPMiddleware):
    """django-csp's middleware, with the policy built once for every response that has no nonce and no
    per-view changes (csp_update, csp_replace, csp_exempt): every API and AI answer.

    django-csp builds its headers anew for each response (the settings' directives copied into dataclasses,
    then joined), ~0.1 ms per AI completion for the same two strings every time. With a nonce (an HTML page
    whose template asked for one) or a view's own changes, django-csp builds them as before."""

    def process_response(self, request, response):
        if getattr(request, "_csp_nonce", None) is not None or any(hasattr(response, a) for a in _CSP_PER_RESPONSE):
            return super().process_response(request, response)
        if response.status_code in (500, 404) and settings.DEBUG:
            return response  # django-csp leaves Django's debug pages alone
        for header, policy, prefixes, exempt in _constant_policies():
            if (
                policy
                and header not in response
                and getattr(response, exempt, False) is False
                and not request.path_info.startswith(prefixes)
            ):
                response[header] = policy
        # As django-csp does: a nonce asked for after the header went out is an error, not a silent miss.
        request.csp_nonce = csp.middleware.CheckableLazyObject(self._csp_nonce_post_response)
        return response


# What a view or decorator sets on a response to change its policy: django-csp builds those responses' own.
_CSP_PER_RESPONSE = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
)


@functools.cache
def _constant_policies():
    """(header, policy, excluded path prefixes, exemption attribute) as django-csp builds them without a nonce or
    per-response changes, for the enforced policy and the report-only one; forgotten when a test changes them."""
    from csp.constants import HEADER, HEADER_REPORT_ONLY
    from csp.utils import build_policy

    return tuple(
        (
            header,
            build_policy(report_only=report_only),
            tuple((getattr(settings, name, None) or {}).get("EXCLUDE_URL_PREFIXES", None) or ()),
            exempt,
        )
        for header, report_only, name, exempt in (
            (HEADER, False, "CONTENT_SECURITY_POLICY", "_csp_exempt"),
            (HEADER_REPORT_ONLY, True, "CONTENT_SECURITY_POLICY_REPORT_ONLY", "_csp_exempt_ro"),
        )
    )


@receiver(setting_changed)
def _csp_settings_changed(setting, **kwargs):
    if setting in ("CONTENT_SECURITY_POLICY", "CONTENT_SECURITY_POLICY_REPORT_ONLY"):
        _constant_policies.cache_clear()
