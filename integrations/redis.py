"""One shared Redis connection pool for the limiter and the breakers (None without REDIS_URL)."""

import functools

from django.conf import settings


@functools.cache
def _client(url):
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


def get_client():
    url = settings.REDIS_URL
    return _client(url) if url else None


def key(*parts):
    return ":".join([settings.CACHE_KEY_PREFIX, *[str(p) for p in parts]])
