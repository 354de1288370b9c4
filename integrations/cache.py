"""Django's Redis cache with fewer round trips on the request path.

Every API request with an inbound limit counts itself: django-ratelimit does
`cache.add`, then `cache.incr` (and Django's `incr` asks Redis twice, EXISTS
then INCRBY; here `incr` is one script). `RedisCache.count(key, timeout)` is
that add-then-increment in one script, one round trip per limited request
(integrations.api.ratelimit). Django also builds a new `redis.Redis` object for
every operation; one per connection pool is enough (the client is thread-safe,
the pool holds the connections). Behaviour is Django's: a missing key is a
ValueError.

One connection pool per process and server, shared by every instance of the
backend: Django keeps a cache instance per async context, so under ASGI (the
production server) each request built its own backend, pool and Redis
connection (a TCP connect and a handshake of several round trips: HELLO, CLIENT
SETINFO, SELECT) and dropped it at the end. redis-py's pool is thread-safe and
starts afresh in a forked child.

`set_and_delete(cache, key, value, timeout, delete, and_wake=(flight, ttl))` stores
one key, drops another and (optionally) wakes a third in one round trip here (a
single-flight answer, its lock and the callers waiting on it), in separate
calls on any other backend.

`get_or_add(cache, key, add_key, add_value, timeout)` reads one key and, when it
is missing, adds another (a single-flight lock) in the same atomic step: one
round trip for a search that is not cached, where a read, the lock and a read
again were three.

`wake(cache, key, ttl)` / `wait_woken(cache, key, timeout)`: a waiter blocks
until someone wakes `key`, instead of polling for what they leave. On Redis the
key is a stream: `wake` adds an entry, `wait_woken` is `XREAD BLOCK` from the
start, so every waiter wakes at once (a list and BLPOP would wake only one) and
one that arrives after the wake returns at once, for `ttl` seconds. Any other
backend is the local-memory cache of a single process (make run, tests without
REDIS_URL), where a process-local `threading.Event` per key is exact: the lock
and the answer live in that process too. A cache shared between processes
without Redis is not a configuration the hub has; there a waiter would sleep
to its timeout and then look again (slow, never wrong).
"""

import threading
import time

from django.core.cache.backends import redis as django_redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT

# INCRBY only if the key exists (INCRBY alone would create it with no expiry).
_INCR_IF_EXISTS = """
if redis.call('exists', KEYS[1]) == 1 then
    return redis.call('incrby', KEYS[1], ARGV[1])
end
return false
"""

# django-ratelimit's count (cache.add(key, 1, timeout), then cache.incr(key) when the add found the key) in
# one step: the same values, the same expiry (set by the first request of the window, kept by the others).
_COUNT = """
redis.call('set', KEYS[1], 0, 'NX', 'EX', ARGV[1])
return redis.call('incr', KEYS[1])
"""

# The value of KEYS[1]; when there is none, SET KEYS[2] NX (1 if taken, 0 if someone holds it). Atomic, so a
# lock taken here was taken while KEYS[1] was missing: nobody left an answer between the read and the lock.
_GET_OR_ADD = """
local value = redis.call('get', KEYS[1])
if value then
    return value
end
if redis.call('set', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then
    return 1
end
return 0
"""


_shared_lock = threading.Lock()
# (server URL, pool class, pool options) -> (pool, client, {name: script}); entries live as long as the process.
_shared = {}


def _shared_entry(url, pool_class, options, client_class):
    key = (url, pool_class, repr(sorted(options.items())))
    entry = _shared.get(key)
    if entry is None:
        with _shared_lock:
            entry = _shared.get(key)
            if entry is None:
                client = client_class(connection_pool=pool_class.from_url(url, **options))
                scripts = {
                    "incr": client.register_script(_INCR_IF_EXISTS),
                    "count": client.register_script(_COUNT),
                    "get_or_add": client.register_script(_GET_OR_ADD),
                }
                entry = _shared[key] = (client.connection_pool, client, scripts)
    return entry


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._entries = {}  # server index -> this process's shared (pool, client, script)

    def _pooled(self, write):
        index = self._get_connection_pool_index(write)
        entry = self._entries.get(index)
        if entry is None:
            entry = self._entries[index] = _shared_entry(
                self._servers[index], self._pool_class, self._pool_options, self._client
            )
        return entry

    def _get_connection_pool(self, write):
        return self._pooled(write)[0]

    def get_client(self, key=None, *, write=False):
        return self._pooled(write)[1]

    def incr(self, key, delta):
        value = self._pooled(True)[2]["incr"](keys=[key], args=[delta])
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return value

    def count(self, key, timeout):
        return self._pooled(True)[2]["count"](keys=[key], args=[timeout])

    def get_or_add(self, key, add_key, add_value, timeout):
        got = self._pooled(True)[2]["get_or_add"](
            keys=[key, add_key], args=[self._serializer.dumps(add_value), timeout]
        )
        if isinstance(got, bytes):
            return self._serializer.loads(got), False
        return None, got == 1

    def set_and_delete(self, key, value, timeout, delete, and_wake=None):
        pipe = self.get_client(key, write=True).pipeline(transaction=False)
        if timeout == 0:
            pipe.delete(key)
        else:
            pipe.set(key, self._serializer.dumps(value), ex=timeout)
        pipe.delete(delete)
        if and_wake is not None:
            self._wake(pipe, *and_wake)
        pipe.execute()

    @staticmethod
    def _wake(pipe, key, ttl):
        pipe.xadd(key, {"w": 1}, maxlen=1)
        pipe.expire(key, ttl)

    def wake(self, key, ttl):
        pipe = self.get_client(key, write=True).pipeline(transaction=False)
        self._wake(pipe, key, ttl)
        pipe.execute()

    def wait_woken(self, key, timeout):
        # XREAD BLOCK 0 would wait forever: at least a millisecond.
        got = self.get_client(key, write=True).xread({key: "0"}, count=1, block=max(1, int(timeout * 1000)))
        return bool(got)


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient

    def set_and_delete(self, key, value, timeout=DEFAULT_TIMEOUT, delete=None, and_wake=None, version=None):
        key = self.make_and_validate_key(key, version=version)
        delete = self.make_and_validate_key(delete, version=version)
        if and_wake is not None:
            and_wake = (self.make_and_validate_key(and_wake[0], version=version), max(1, int(and_wake[1])))
        self._cache.set_and_delete(key, value, self.get_backend_timeout(timeout), delete, and_wake)

    def count(self, key, timeout, version=None):
        return self._cache.count(self.make_and_validate_key(key, version=version), max(1, int(timeout)))

    def get_or_add(self, key, add_key, add_value, timeout, version=None):
        key = self.make_and_validate_key(key, version=version)
        add_key = self.make_and_validate_key(add_key, version=version)
        return self._cache.get_or_add(key, add_key, add_value, max(1, int(timeout)))

    def wake(self, key, ttl, version=None):
        self._cache.wake(self.make_and_validate_key(key, version=version), max(1, int(ttl)))

    def wait_woken(self, key, timeout, version=None):
        return self._cache.wait_woken(self.make_and_validate_key(key, version=version), timeout)


class _LocalWakes:
    """One threading.Event per key for a process-local cache; a key is forgotten once nobody can need it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events = {}  # key -> (event, monotonic time after which nobody waits on it)

    def _event(self, key, linger):
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, (_, until) in self._events.items() if until < now]:
                del self._events[stale]
            event, until = self._events.get(key, (None, 0.0))
            event = event or threading.Event()
            self._events[key] = (event, max(until, now + linger))
            return event

    def wake(self, key, ttl):
        self._event(key, ttl).set()

    def wait_woken(self, key, timeout):
        return self._event(key, timeout + 1).wait(max(0.0, timeout))


_local_wakes = _LocalWakes()


def wake(cache, key, ttl):
    """Wake everyone waiting on `key`, and anyone who starts waiting on it in the next `ttl` seconds."""
    if isinstance(cache, RedisCache):
        cache.wake(key, ttl)
    else:
        _local_wakes.wake((id(cache), key), ttl)


def wait_woken(cache, key, timeout):
    """Block until `key` is woken (True) or `timeout` seconds pass (False); never polls."""
    if isinstance(cache, RedisCache):
        return cache.wait_woken(key, timeout)
    return _local_wakes.wait_woken((id(cache), key), timeout)


def set_and_delete(cache, key, value, timeout, delete, *, and_wake=None):
    """`cache.set(key, value, timeout)`, `cache.delete(delete)` and, with `and_wake=(key, ttl)`,
    `wake(cache, key, ttl)`: in one round trip where the backend can."""
    if isinstance(cache, RedisCache):
        cache.set_and_delete(key, value, timeout, delete=delete, and_wake=and_wake)
        return
    cache.set(key, value, timeout)
    cache.delete(delete)
    if and_wake is not None:
        wake(cache, *and_wake)


def get_or_add(cache, key, add_key, add_value, timeout):
    """(value of `key`, False) when it is there; else (None, whether `add_key` was added, as `cache.add`).

    One atomic round trip on Redis. Elsewhere a read, the add and, once added, a read again (a value left
    between the first read and the add is returned, and the add undone), so that on every backend an add
    reported here was made while `key` was missing."""
    if isinstance(cache, RedisCache):
        return cache.get_or_add(key, add_key, add_value, timeout)
    value = cache.get(key)
    if value is not None:
        return value, False
    if not cache.add(add_key, add_value, timeout):
        return None, False
    value = cache.get(key)
    if value is not None:
        cache.delete(add_key)
        return value, False
    return None, True
