"""The lean ack path: provider callbacks skip the middleware they do not need.

A webhook POST needs no session, user, CSRF token (the signature is the
authentication), CORS, clickjacking header, login lockout or per-view request
metrics (the inbox counts its own `hub_webhook_events_total`), yet the full
chain cost about a third of the CPU of each delivery. WebhookFastPathMiddleware
sits first in MIDDLEWARE: a request under WEBHOOK_FAST_PATH_PREFIX whose URL
resolves runs through WEBHOOK_MIDDLEWARE only (request id and access log) to
its view; every other request goes down the full chain, untouched. Errors are
turned into responses exactly as Django does for the full chain (JSON 500
through handler500).

Under ASGI the hub's handler (config.asgi_handler) takes a resolved webhook
route before Django's request machinery: `webhook_route` and `short_chain`
below are what it runs, so both servers answer a delivery through the same
chain.
"""

import functools

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.urls import Resolver404, resolve
from django.utils.module_loading import import_string

from ..aio import db_hop
from ..api.errors import debug_error_response


@functools.lru_cache(maxsize=1024)
def resolved(path, urlconf):
    """The ResolverMatch of `path`, or None. Providers post to the same few paths all day and clients call the
    same API paths: each is resolved once (bounded, so arbitrary paths cannot grow it)."""
    try:
        return resolve(path, urlconf)
    except Resolver404:
        return None


def webhook_route(path_info):
    """The resolved route of a path under WEBHOOK_FAST_PATH_PREFIX, or None: the full chain answers it
    (its 404, or CommonMiddleware's slash redirect)."""
    prefix = settings.WEBHOOK_FAST_PATH_PREFIX
    if not prefix or not path_info.startswith(prefix):
        return None
    # ROOT_URLCONF: this runs before any middleware could set a request's own urlconf.
    return resolved(path_info, settings.ROOT_URLCONF)


def _call_view(request):
    match = request.resolver_match
    try:
        return match.func(request, *match.args, **match.kwargs)
    except Exception as exc:
        # With DEBUG on, the JSON error the full chain's JsonErrorsUnderDebugMiddleware gives, not the HTML page.
        response = debug_error_response(request, exc)
        if response is None:
            raise
        return response


def short_chain():
    """WEBHOOK_MIDDLEWARE around the resolved view, synchronous (the inbox's views are sync), with Django's
    exception-to-response conversion at every layer as in the full chain."""
    handler = convert_exception_to_response(_call_view)
    for path in reversed(settings.WEBHOOK_MIDDLEWARE):
        handler = convert_exception_to_response(import_string(path)(handler))
    return handler


class WebhookFastPathMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        # Built once; under ASGI the whole short chain runs in one thread hop (integrations.aio.db_hop).
        self.fast = short_chain()

    def _fast_match(self, request):
        match = webhook_route(request.path_info)
        if match is None:
            return False
        request.resolver_match = match
        return True

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        if self._fast_match(request):
            return self.fast(request)
        return self.get_response(request)

    async def _acall(self, request):
        if self._fast_match(request):
            # Django's AsyncClient (tests): with the pool on db_hop's threads, else Django's one thread.
            return await db_hop(self.fast, request)
        return await self.get_response(request)
