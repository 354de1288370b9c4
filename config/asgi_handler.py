"""Django's ASGI handler without a thread hop for middleware that does no I/O.

Under ASGI, Django runs each `MiddlewareMixin` middleware's `process_request`,
`process_view` and `process_response` through `sync_to_async(thread_sensitive=True)`:
every request crossed to the one shared thread about twenty times, and concurrent
requests queued for it. The middleware below only reads headers and cookies and
sets headers, so the hub runs those methods on the event loop. The session
middleware crosses only when it must save the session. Django's own guard still
stands: a database query on the event loop raises SynchronousOnlyOperation, so a
middleware that starts doing I/O fails loudly in the ASGI tests.
"""

import functools

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler


def _no_io_classes():
    """Imported when the handler loads its middleware, after django.setup()."""
    from csp.middleware import CSPMiddleware
    from django.contrib.auth.middleware import AuthenticationMiddleware
    from django.contrib.messages.middleware import MessageMiddleware
    from django.middleware.clickjacking import XFrameOptionsMiddleware
    from django.middleware.common import CommonMiddleware
    from django.middleware.csrf import CsrfViewMiddleware
    from django.middleware.security import SecurityMiddleware
    from django_prometheus.middleware import PrometheusAfterMiddleware, PrometheusBeforeMiddleware

    classes = [
        SecurityMiddleware,
        CommonMiddleware,
        AuthenticationMiddleware,  # request.user is lazy; DRF and the views resolve it off the loop
        MessageMiddleware,  # cookie storage, falling back to the session (saved by SessionMiddleware)
        XFrameOptionsMiddleware,
        CSPMiddleware,
        PrometheusBeforeMiddleware,
        PrometheusAfterMiddleware,
    ]
    if not settings.CSRF_USE_SESSIONS:  # the CSRF secret comes from a cookie, not the session store
        classes.append(CsrfViewMiddleware)
    return tuple(classes)


async def _acall_inline(self, request):
    response = None
    if hasattr(self, "process_request"):
        response = self.process_request(request)
    response = response or await self.get_response(request)
    if hasattr(self, "process_response"):
        response = self.process_response(request, response)
    return response


async def _session_acall(self, request):
    self.process_request(request)  # a lazy SessionStore: nothing is read yet
    response = await self.get_response(request)
    session = getattr(request, "session", None)
    if session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST):
        return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
    return self.process_response(request, response)


def _on_loop(method):
    @functools.wraps(method)
    async def run(*args, **kwargs):
        return method(*args, **kwargs)

    run.__self__ = method.__self__  # Django names the middleware in its errors by it
    return markcoroutinefunction(run)


class HubASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        from django.contrib.sessions.middleware import SessionMiddleware

        self.no_io = _no_io_classes()
        for cls in self.no_io:
            cls.__acall__ = _acall_inline
        SessionMiddleware.__acall__ = _session_acall
        super().load_middleware(is_async=is_async)

    def adapt_method_mode(self, is_async, method, method_is_async=None, debug=False, name=None):
        owner = getattr(method, "__self__", None)
        if is_async and type(owner) in getattr(self, "no_io", ()) and not iscoroutinefunction(method):
            return _on_loop(method)  # process_view / process_exception of a middleware above
        return super().adapt_method_mode(is_async, method, method_is_async, debug, name)


def get_asgi_application():
    import django

    django.setup(set_prefix=False)
    return HubASGIHandler()
