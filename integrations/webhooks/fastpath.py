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
"""

import functools

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.urls import Resolver404, get_urlconf, resolve
from django.utils.module_loading import import_string

from ..aio import db_hop


@functools.lru_cache(maxsize=256)
def _resolve(path, urlconf):
    # A provider posts to the same few paths all day: resolve each once (bounded, so arbitrary paths cannot grow it).
    try:
        return resolve(path, urlconf)
    except Resolver404:
        return None


def _call_view(request):
    match = request.resolver_match
    return match.func(request, *match.args, **match.kwargs)


class WebhookFastPathMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        self.prefix = settings.WEBHOOK_FAST_PATH_PREFIX
        # The short chain is built once, synchronous: the inbox's views are sync (under ASGI the whole
        # chain runs in one thread hop, integrations.aio.db_hop).
        handler = convert_exception_to_response(_call_view)
        for path in reversed(settings.WEBHOOK_MIDDLEWARE):
            handler = convert_exception_to_response(import_string(path)(handler))
        self.fast = handler

    def _fast_match(self, request):
        if not self.prefix or not request.path_info.startswith(self.prefix):
            return False
        match = _resolve(request.path_info, get_urlconf() or settings.ROOT_URLCONF)
        if match is None:
            return False  # the full chain answers (its 404, or CommonMiddleware's slash redirect)
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
            # With the connection pool on DB_HOP_THREADS threads (deliveries overlap), else Django's one thread.
            return await db_hop(self.fast, request)
        return await self.get_response(request)
