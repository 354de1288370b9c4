"""Django's ASGI handler without a thread hop for middleware that does no I/O.

Under ASGI, Django runs each `MiddlewareMixin` middleware's `process_request`,
`process_view` and `process_response` through `sync_to_async(thread_sensitive=True)`:
every request crossed to the one shared thread about twenty times, and concurrent
requests queued for it. The middleware below only reads headers and cookies and
sets headers, so the hub runs those methods on the event loop. The session
middleware crosses only when it must save the session. Django's own guard still
stands: a database query on the event loop raises SynchronousOnlyOperation, so a
middleware that starts doing I/O fails loudly in the ASGI tests.

Webhook deliveries (the lean ack path, integrations.webhooks.fastpath) skip
Django's per-request machinery as well. For each request it opens a
ThreadSensitiveContext, so its thread-sensitive calls (request_started's and
request_finished's receivers) start a new thread and join it, and it races the
view against a disconnect listener in two tasks: that cost more CPU than the
delivery's own work (bench_inbox, ~1 ms of ~2 per delivery). A resolved webhook
route is served here instead: the body read into memory; request_started, the
short chain and the view in one hop off the loop (integrations.aio.db_hop, the
connection pool's threads), which also closes the response (request_finished)
when closing it runs no after-response work; then the answer is sent. A
response that has such work, or streams, is closed after sending, in a second
hop, as Django does. A client that disconnects meanwhile changes nothing: the
delivery is stored and acknowledged to no one, as under Django's handler,
whose sync view cannot be cancelled either.
"""

import functools
import io

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix

from integrations.aio import db_hop
from integrations.context import nothing_left_after

FAST_PATH = "integrations.webhooks.fastpath.WebhookFastPathMiddleware"


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
        # Imported now, after django.setup() (the webhooks package loads models), not per request.
        from integrations.webhooks.fastpath import short_chain, webhook_route

        # Only where the chain itself takes the fast path: with it switched off, webhooks go the full way.
        self.webhook_chain = short_chain() if FAST_PATH in settings.MIDDLEWARE else None
        self.webhook_route = webhook_route

    def adapt_method_mode(self, is_async, method, method_is_async=None, debug=False, name=None):
        owner = getattr(method, "__self__", None)
        if is_async and type(owner) in getattr(self, "no_io", ()) and not iscoroutinefunction(method):
            return _on_loop(method)  # process_view / process_exception of a middleware above
        return super().adapt_method_mode(is_async, method, method_is_async, debug, name)

    async def __call__(self, scope, receive, send):
        if self.webhook_chain is not None and scope["type"] == "http":
            match = self.webhook_route(scope["path"].removeprefix(get_script_prefix(scope)))
            if match is not None:
                await self.handle_webhook(scope, receive, send, match)
                return
        await super().__call__(scope, receive, send)

    async def handle_webhook(self, scope, receive, send, match):
        try:
            body_file = await self._read_webhook_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, response = self.create_request(scope, body_file)
        if request is not None:
            request.resolver_match = match
            response = await db_hop(self._webhook_response, scope, request)
        else:  # Django's own 400 / 413 for a request it cannot build
            await db_hop(signals.request_started.send, sender=self.__class__, scope=scope)
            response._handler_class = self.__class__
        try:
            await self.send_response(response, send)
        finally:
            body_file.close()
            if not response.closed:
                await db_hop(response.close)

    def _webhook_response(self, scope, request):
        signals.request_started.send(sender=self.__class__, scope=scope)
        response = self.webhook_chain(request)
        response._handler_class = self.__class__
        if not response.streaming and nothing_left_after(response):
            response.close()  # request_finished, on the thread that holds the connection
        return response

    async def _read_webhook_body(self, receive):
        """The body in memory when it came in one message (a webhook's usually does), else Django's spooled file."""
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            return io.BytesIO(message.get("body", b""))
        return await self.read_body(_replay(message, receive))


def _replay(first, receive):
    pending = [first]

    async def again():
        return pending.pop() if pending else await receive()

    return again


def get_asgi_application():
    import django

    django.setup(set_prefix=False)
    return HubASGIHandler()
