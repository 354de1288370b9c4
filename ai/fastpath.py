"""The lean route for AI completions: what a completion needs of Django's middleware, and nothing else.

An API client's completion (`POST /api/v1/ai/completions/` with `Authorization:
Token ...`) needs its request id and access log line, the request metrics, the
security headers, CORS, the query-string guard and the JSON error shapes: the
middleware named in AI_MIDDLEWARE. It needs no session, Django user (the API
token is its authentication, read by the view's own DRF authenticators), CSRF
token (DRF checks CSRF only for session authentication), messages, static files
or login lockout, yet the full chain ran all of them on every completion, and
Django resolved the URL again after the ASGI handler had (bench_ai_serving,
issue 11: the hub's added latency at most half LiteLLM's).

The view is the same CompletionView, with DRF's own authentication,
permissions, validation, error shapes and rendering: the answer is the one the
full chain gives, headers included (tests/ai/test_fast_path.py compares them).
A request without a token header (session authentication needs the session,
user and CSRF middleware) or for any other route goes the full way.

Under ASGI the hub's handler (config.asgi_handler.handle_async_view) takes the
route before Django's own request handling; `AiFastPathMiddleware`, first in
MIDDLEWARE beside the webhooks', does the same for any other handler (Django's
test clients), so both answer through `short_chain` below.
"""

import functools

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.utils.module_loading import import_string

from integrations.webhooks.fastpath import resolved


@functools.cache
def _lean_views():
    from .views import CompletionView

    return (CompletionView,)


def ai_route(request):
    """The resolved route when `request` takes the lean path (set on the request), else None."""
    if not settings.AI_FAST_PATH or request.method != "POST":
        return None
    # DRF's TokenAuthentication reads the header's first word case-insensitively; any other scheme (or none)
    # falls to session authentication, which needs the full chain.
    auth = request.META.get("HTTP_AUTHORIZATION", "")
    if auth[:6].lower() != "token ":
        return None
    match = resolved(request.path_info, settings.ROOT_URLCONF)  # ROOT_URLCONF: no middleware set one yet
    if match is None or getattr(match.func, "view_class", None) not in _lean_views():
        return None
    request.resolver_match = match
    return match


def short_chain():
    """AI_MIDDLEWARE around the resolved (async) view, as Django's handler builds the full chain: each
    middleware's process_view before the view, process_exception after a view's error (innermost first),
    and Django's exception-to-response conversion at every layer."""
    view_hooks, exception_hooks = [], []

    async def call_view(request):
        match = request.resolver_match
        for hook in view_hooks:
            response = hook(request, match.func, match.args, match.kwargs)
            if iscoroutinefunction(hook):
                response = await response
            if response is not None:
                return response
        try:
            return await match.func(request, *match.args, **match.kwargs)
        except Exception as exc:
            for hook in exception_hooks:
                response = hook(request, exc)
                if iscoroutinefunction(hook):
                    response = await response
                if response is not None:
                    return response
            raise

    handler = convert_exception_to_response(markcoroutinefunction(call_view))
    for path in reversed(settings.AI_MIDDLEWARE):
        middleware = import_string(path)(handler)
        if hasattr(middleware, "process_view"):
            view_hooks.insert(0, middleware.process_view)
        if hasattr(middleware, "process_exception"):
            exception_hooks.append(middleware.process_exception)
        handler = convert_exception_to_response(middleware)
    return handler


class AiFastPathMiddleware:
    """First in MIDDLEWARE: a lean-route request (`ai_route`) goes through `short_chain` instead of the rest."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
            self.fast = short_chain()

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        # A sync handler (WSGI) runs the async view in a loop of its own: the full chain, as before.
        return self.get_response(request)

    async def _acall(self, request):
        if ai_route(request) is not None:
            return await self.fast(request)
        return await self.get_response(request)
