import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings

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
