"""One shared Redis connection pool for the limiter and the breakers (None without REDIS_URL).

`get_client` is the blocking client (workers, sync views); `aget_client` the asyncio one
(the async AI path, where a blocking call would stall every open stream). `cache_best_effort`
is for the Django cache in front of rows the database holds anyway."""

import functools
import logging
import weakref

from django.conf import settings

logger = logging.getLogger(__name__)


@functools.cache
def _client(url):
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


def get_client():
    url = settings.REDIS_URL
    return _client(url) if url else None


def key(*parts):
    return ":".join([settings.CACHE_KEY_PREFIX, *[str(p) for p in parts]])


# redis.asyncio connections belong to the event loop that opened them: one
# client per loop (the ASGI worker has one loop for its life; tests make many).
_async_clients = weakref.WeakKeyDictionary()
ASYNC_MAX_CONNECTIONS = 100  # per worker process: each Redis call holds one for its round trip only
ASYNC_POOL_WAIT_SECONDS = 5


def aget_client():
    """The asyncio Redis client for the running loop (None without REDIS_URL), for the async request path."""
    url = settings.REDIS_URL
    if not url:
        return None
    import asyncio

    import redis.asyncio

    loop = asyncio.get_running_loop()
    entry = _async_clients.get(loop)
    if entry is None or entry[0] != url:
        # A blocking pool: when every connection is in use (a burst of hundreds of streams opening at once) a
        # call waits for one to come back instead of failing at once, as redis-py's default pool does.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=ASYNC_MAX_CONNECTIONS,
            timeout=ASYNC_POOL_WAIT_SECONDS,
            socket_timeout=2,
            socket_connect_timeout=2,
            health_check_interval=30,
        )
        entry = _async_clients[loop] = (url, redis.asyncio.Redis(connection_pool=pool))
    return entry[1]


def cache_best_effort(operation, *args):
    """`cache.<operation>(*args)` on Django's cache, or None (logged) when Redis cannot be reached.

    For caches whose source of truth is the database (API tokens, AI limits): an outage then costs
    a query, not the request; a forget that fails leaves the entry to its timeout."""
    from django.core.cache import cache
    from redis.exceptions import RedisError

    try:
        return getattr(cache, operation)(*args)
    except (RedisError, OSError) as exc:
        logger.warning("cache %s failed: %r", operation, exc)
        return None
