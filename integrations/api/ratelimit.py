"""Inbound API limits on django-ratelimit, answered as JSON 429 with Retry-After.

    class PayView(APIView):
        @ratelimit(group="payments.pay", rate="5/m")
        def post(self, request, pk): ...

Counts per authenticated user (or client IP when anonymous) in the default
cache (Redis in production). The DRF request is passed so that token-auth
users are seen, not only session ones.
"""

import functools

from django.conf import settings
from django_ratelimit import ALL
from django_ratelimit.core import get_usage
from rest_framework.exceptions import Throttled


def ratelimit_check(request, *, group, rate, key="user_or_ip", method=ALL):
    """Count this request against its limit; raise Throttled (JSON 429 + Retry-After) past it."""
    if settings.RATELIMIT_ENABLE:
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
