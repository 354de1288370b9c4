"""Inbound API limits on django-ratelimit, answered as JSON 429 with Retry-After.

    class PayView(APIView):
        @ratelimit(group="payments.pay", rate="5/m")
        def post(self, request, pk): ...

Counts per authenticated user (or client IP when anonymous) in the default
cache (Redis in production). The DRF request is passed so that token-auth
users are seen, not only session ones.

On Redis a request is counted in one round trip (`RedisCache.count`, one script):
django-ratelimit's own count is two (`cache.add`, then `cache.incr`), on every
limited request, a flight search's included. The window, the cache key and the
stored count are django-ratelimit's (its fixed window per key, jittered by the
key), so `get_usage` reads what is counted here and a rolling deploy neither
resets nor doubles anyone's count. Keys other than django-ratelimit's simple
ones (`user`, `ip`, `user_or_ip`) or a callable, and every other cache (the
local-memory cache of `make run`), go through django-ratelimit as they did.
"""

import functools
import time

from django.conf import settings
from django.core.cache import caches
from django.utils.module_loading import import_string
from django_ratelimit import ALL
from django_ratelimit.core import (
    _SIMPLE_KEYS,
    EXPIRATION_FUDGE,
    _get_window,
    _make_cache_key,
    _method_match,
    _split_rate,
    get_usage,
)
from rest_framework.exceptions import Throttled

from integrations.cache import RedisCache


def _counted(cache, request, *, group, rate, key, method):
    """django-ratelimit's usage after counting this request, in one round trip; None: not limited here."""
    if not _method_match(request, method):
        return None
    if callable(rate):
        rate = rate(group, request)
    elif isinstance(rate, str) and "." in rate:
        rate = import_string(rate)(group, request)
    if rate is None:
        return None
    limit, period = _split_rate(rate)
    value = key(group, request) if callable(key) else _SIMPLE_KEYS[key](request)
    window = _get_window(value, period)
    count = cache.count(_make_cache_key(group, window, rate, value, method), period + EXPIRATION_FUDGE)
    return {"count": count, "limit": limit, "should_limit": count > limit, "time_left": window - int(time.time())}


def ratelimit_check(request, *, group, rate, key="user_or_ip", method=ALL):
    """Count this request against its limit; raise Throttled (JSON 429 + Retry-After) past it."""
    if settings.RATELIMIT_ENABLE:
        cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
        if isinstance(cache, RedisCache) and (callable(key) or key in _SIMPLE_KEYS):
            usage = _counted(cache, request, group=group, rate=rate, key=key, method=method)
        else:
            usage = get_usage(request, group=group, key=key, rate=rate, method=method, increment=True)
        if usage and usage["should_limit"]:
            raise Throttled(wait=max(1, usage["time_left"]))


def ratelimit(*, group, rate, key="user_or_ip", method=ALL):
    def decorator(view_method):
        @functools.wraps(view_method)
        def wrapper(view, request, *args, **kwargs):
            ratelimit_check(request, group=group, rate=rate, key=key, method=method)
            return view_method(view, request, *args, **kwargs)

        return wrapper

    return decorator
