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
short chain and the view in one hop off the loop (integrations.aio.webhook_hop's
threads with the connection pool, else db_hop), which also closes the response (request_finished)
when closing it runs no after-response work; then the answer is sent. A
response that has such work, or streams, is closed after sending, in a second
hop, as Django does. A client that disconnects meanwhile changes nothing: the
delivery is stored and acknowledged to no one, as under Django's handler,
whose sync view cannot be cancelled either.

Every other request for a sync view (the REST API, admin, /healthz) is served
the same way with the connection pool on (the ASGI server, SYNC_VIEW_THREADS > 0):
Django's synchronous middleware chain and the view run whole in one hop, as
under WSGI, on threads of their own (integrations.aio.view_hop), so an API call
does not queue behind a burst of AI bookings on db_hop's. Django's ASGI path
cost /healthz 1.8 ms of CPU against 0.8 ms this way (bench/RESULTS.md). Async
views (the AI endpoints) take Django's path with its request signals on the loop
instead of two hops (handle_async_view), an API client's completion through the AI fast
path's short chain instead of the full one (get_response_async, ai.fastpath); paths that do not resolve (static files,
404s, CommonMiddleware's slash redirects) take Django's path as it is.
"""

import asyncio
import contextlib
import functools
import io
import os
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.urls import set_script_prefix, set_urlconf
from django.utils.log import log_response

from integrations.aio import db_hop, view_hop, webhook_hop
from integrations.context import nothing_left_after

FAST_PATH = "integrations.webhooks.fastpath.WebhookFastPathMiddleware"
AI_FAST_PATH = "ai.fastpath.AiFastPathMiddleware"


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
        from ai import fastpath as ai_fastpath
        from integrations.webhooks.fastpath import resolved, short_chain, webhook_route

        # Only where the chain itself takes the fast path: with it switched off, webhooks go the full way.
        self.webhook_chain = short_chain() if FAST_PATH in settings.MIDDLEWARE else None
        self.webhook_route = webhook_route
        self.resolved = resolved
        # An AI completion with an API token: AI_MIDDLEWARE around its view (get_response_async), not the full chain.
        self.ai_chain = ai_fastpath.short_chain() if is_async and AI_FAST_PATH in settings.MIDDLEWARE else None
        self.ai_route = ai_fastpath.ai_route
        # Every other sync view: Django's synchronous chain (as under WSGI), run whole in one hop on the
        # sync views' own threads (__call__ takes it only with the connection pool: SYNC_VIEW_THREADS).
        self.sync_chain = BaseHandler()
        self.sync_chain.load_middleware(is_async=False)

    def adapt_method_mode(self, is_async, method, method_is_async=None, debug=False, name=None):
        owner = getattr(method, "__self__", None)
        if is_async and type(owner) in getattr(self, "no_io", ()) and not iscoroutinefunction(method):
            return _on_loop(method)  # process_view / process_exception of a middleware above
        return super().adapt_method_mode(is_async, method, method_is_async, debug, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"].removeprefix(get_script_prefix(scope))
            match = self.webhook_route(path) if self.webhook_chain is not None else None
            if match is not None:
                respond = functools.partial(self._webhook_response, match)
                await self.handle_in_one_hop(
                    scope, receive, send, respond, webhook_hop if settings.WEBHOOK_THREADS else db_hop
                )
                return
            if settings.SYNC_VIEW_THREADS:
                if self._sync_view(path):
                    await self.handle_in_one_hop(scope, receive, send, self._sync_response, view_hop)
                    return
                # Django's path (an async view, a static file, a 404), with one long-lived thread for its
                # thread-sensitive calls (request_started's and request_finished's receivers, response.close)
                # instead of a new thread per request and another to join it: starting each blocked the loop
                # until the new thread got the GIL, ~2 ms of an AI completion's ~10 (bench/RESULTS.md).
                sensitive = self._sensitive_thread()
                async with ThreadSensitiveContext(executor=sensitive):
                    if self._async_view(path):
                        await self.handle_async_view(scope, receive, send, sensitive)
                    else:
                        await self.handle(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def handle_async_view(self, scope, receive, send, sensitive):
        """Django's `handle` (the disconnect listener racing the view included) without its two hops to the
        thread-sensitive thread for the request signals, for an async view with the connection pool on.

        Their receivers (reset_queries, close_old_connections, close_caches, reset_urlconf) tidy the calling
        thread's connections, and the loop's thread holds none: Django refuses database work on it. So they
        run here, on the loop, unless the request handed work to `sensitive` (the thread-sensitive thread: a
        session saved, Django's async ORM): its connection then goes back to the pool as Django does it, with
        request_finished on that thread. Only a streamed response is always closed there (its iterator may
        hold what its closers free). A receiver must not do I/O (nor be a coroutine: Signal.send cannot await
        it here, and fails loudly). The two hops cost ~0.2-0.25 ms of the worker's CPU per completion (py-spy
        of bench_ai_serving's non-streamed rounds), and two thread wake-ups on a busy machine."""
        try:
            body_file = await self._read_body_once(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        used = sensitive.used
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await sync_to_async(error_response.close)()
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client went away during send_response
                await self.send_response(response, send)
            return response

        # As Django's handle: a disconnect while the view runs cancels it.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            response = None
        on_loop = sensitive.used == used and (response is None or not response.streaming)
        if response is None:
            if on_loop:
                signals.request_finished.send(sender=self.__class__)
            else:
                await signals.request_finished.asend(sender=self.__class__)
        elif on_loop:
            response.close()
        else:
            await sync_to_async(response.close)()
        body_file.close()

    async def get_response_async(self, request):
        """Django's, with the AI fast path's short chain (ai.fastpath) for the requests it takes."""
        if self.ai_chain is None or self.ai_route(request) is None:
            return await super().get_response_async(request)
        set_urlconf(settings.ROOT_URLCONF)
        response = await self.ai_chain(request)
        response._resource_closers.append(request.close)
        if response.status_code >= 400:
            await sync_to_async(log_response, thread_sensitive=False)(
                "%s: %s", response.reason_phrase, request.path, response=response, request=request
            )
        return response

    def _sensitive_thread(self):
        """One thread per worker process (made after the fork: a preloaded master's thread would not exist)."""
        pid = os.getpid()
        if getattr(self, "_sensitive_pid", None) != pid:
            self._sensitive = _CountingExecutor(1, thread_name_prefix="asgi-sensitive")
            self._sensitive_pid = pid
        return self._sensitive

    async def handle_in_one_hop(self, scope, receive, send, respond, hop):
        """Read the body, then `respond(scope, request)` in one `hop` off the loop, then send the answer."""
        try:
            body_file = await self._read_body_once(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = await hop(respond, scope, request)
        else:  # Django's own 400 / 413 for a request it cannot build
            await hop(signals.request_started.send, sender=self.__class__, scope=scope)
            response._handler_class = self.__class__
        try:
            await self.send_response(response, send)
        finally:
            body_file.close()
            if not response.closed:
                await hop(response.close)

    def _sync_view(self, path):
        """True when `path` resolves to a view that is not a coroutine function (Django would run it in a thread)."""
        match = self.resolved(path, settings.ROOT_URLCONF)
        return match is not None and not iscoroutinefunction(match.func)

    def _async_view(self, path):
        """True when `path` resolves to a coroutine view (the AI endpoints)."""
        match = self.resolved(path, settings.ROOT_URLCONF)
        return match is not None and iscoroutinefunction(match.func)

    def _webhook_response(self, match, scope, request):
        signals.request_started.send(sender=self.__class__, scope=scope)
        request.resolver_match = match
        return self._closed_unless_work_left(self.webhook_chain(request), request)

    def _sync_response(self, scope, request):
        signals.request_started.send(sender=self.__class__, scope=scope)
        return self._closed_unless_work_left(self.sync_chain.get_response(request), request)

    def _closed_unless_work_left(self, response, request):
        response._handler_class = self.__class__
        if not response.streaming and nothing_left_after(response, request):
            response.close()  # request_finished, on the thread that holds the connection
        return response

    async def _read_body_once(self, receive):
        """The body in memory when it came in one message (a webhook's or an API call's usually does), else
        Django's spooled file."""
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            return io.BytesIO(message.get("body", b""))
        return await self.read_body(_replay(message, receive))


class _CountingExecutor(ThreadPoolExecutor):
    """The thread-sensitive thread; `used` counts the work handed to it (handle_async_view)."""

    used = 0

    def submit(self, fn, /, *args, **kwargs):
        self.used += 1
        return super().submit(fn, *args, **kwargs)


def _replay(first, receive):
    pending = [first]

    async def again():
        return pending.pop() if pending else await receive()

    return again


def get_asgi_application():
    import django

    django.setup(set_prefix=False)
    return HubASGIHandler()
