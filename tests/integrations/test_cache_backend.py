"""The Redis cache backend: Django's behaviour, fewer round trips (integrations/cache.py)."""

import threading
from unittest import mock

import pytest
from django.core.cache import cache, caches

from integrations.cache import RedisCache, get_or_add, set_and_delete, wait_woken, wake

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_cache():
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        pytest.skip("REDIS_URL is not set: the local-memory cache is in use")
    return backend


def test_incr_adds_to_a_key_and_keeps_its_expiry(redis_cache):
    cache.set("t:incr", 5, 300)
    assert cache.incr("t:incr") == 6
    assert cache.incr("t:incr", 10) == 16
    assert cache.get("t:incr") == 16
    key = redis_cache.make_and_validate_key("t:incr")
    assert 0 < redis_cache._cache.get_client(key).ttl(key) <= 300


def test_incr_of_a_missing_key_is_a_value_error_and_creates_nothing(redis_cache):
    cache.delete("t:missing")
    with pytest.raises(ValueError):
        cache.incr("t:missing")
    assert cache.get("t:missing") is None


def test_every_instance_of_the_backend_shares_one_connection_pool(redis_cache):
    # Django builds a cache instance per async context: under ASGI, one per request.
    other = caches.create_connection("default")
    assert other is not redis_cache
    pool = redis_cache._cache.get_client(write=True).connection_pool
    assert other._cache.get_client(write=True).connection_pool is pool
    other.set("t:shared", 1, 30)
    assert cache.get("t:shared") == 1 and other.incr("t:shared") == 2


def test_set_and_delete_stores_one_key_and_drops_the_other(redis_cache):
    cache.set("t:lock", "held", 30)
    set_and_delete(redis_cache, "t:answer", {"offers": [1, 2]}, 60, "t:lock")
    assert cache.get("t:answer") == {"offers": [1, 2]}
    assert cache.get("t:lock") is None


def test_set_and_delete_can_wake_a_key_in_the_same_round_trip(redis_cache):
    cache.set("t:lock", "held", 30)
    client = redis_cache._cache.get_client(write=True)
    calls = []
    real_execute = type(client.pipeline()).execute

    def execute(pipe, *args, **kwargs):
        calls.append([c[0][0] for c in pipe.command_stack])
        return real_execute(pipe, *args, **kwargs)

    with mock.patch.object(type(client.pipeline()), "execute", execute):
        set_and_delete(redis_cache, "t:answer", 1, 60, "t:lock", and_wake=("t:woken", 5))
    assert calls == [["SET", "DEL", "XADD", "EXPIRE"]]
    assert cache.get("t:answer") == 1 and cache.get("t:lock") is None
    assert wait_woken(redis_cache, "t:woken", 0.001) is True


def test_set_and_delete_works_on_any_backend(settings):
    settings.CACHES = {**settings.CACHES, "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    other = caches["other"]
    other.set("lock", "held")
    set_and_delete(other, "answer", 1, 60, "lock", and_wake=("flight", 5))
    assert other.get("answer") == 1 and other.get("lock") is None
    assert wait_woken(other, "flight", 0.001) is True


def test_the_inbound_limit_still_counts_on_it(user_client, settings, still_clock):
    settings.TRAVEL_SEARCH_USER_RATE = "2/m"
    # Counted before validation: two refused bodies, then the limit.
    answers = [user_client.post("/api/v1/travel/searches/", {}, format="json").status_code for _ in range(3)]
    assert answers == [400, 400, 429]


@pytest.fixture(params=["redis", "locmem"])
def any_cache(request, settings):
    """The Redis cache (XREAD BLOCK) and the local-memory one of `make run` (a thread event): same behaviour."""
    if request.param == "redis":
        return request.getfixturevalue("redis_cache")
    settings.CACHES = {**settings.CACHES, "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return caches["other"]


def test_a_waiter_is_woken_by_wake_and_one_arriving_later_returns_at_once(any_cache):
    woken = []
    waiters = [threading.Thread(target=lambda: woken.append(wait_woken(any_cache, "t:flight", 300))) for _ in range(3)]
    for t in waiters:
        t.start()
    wake(any_cache, "t:flight", 5)
    for t in waiters:
        t.join(30)  # a waiter that was not woken would sit 300 s
    assert woken == [True] * 3
    assert wait_woken(any_cache, "t:flight", 300) is True


def test_a_wait_nobody_ends_returns_false_after_its_timeout(any_cache):
    assert wait_woken(any_cache, "t:nobody", 0.05) is False


def test_a_fresh_worker_opens_the_shared_redis_connection_before_its_first_request(redis_cache, monkeypatch):
    # config.warmup.warm_worker runs after the fork; without it the first request's token lookup
    # paid for the TCP connect and the handshake (~3 ms of an ~8 ms completion).
    from config.warmup import warm_worker

    monkeypatch.setattr("integrations.cache._shared", {})  # as in a newly forked worker: no pool yet
    redis_cache._cache._entries.clear()
    warm_worker()
    pool = redis_cache._cache.get_client(write=False).connection_pool
    assert len(pool._available_connections) == 1
    redis_cache._cache._entries.clear()  # the next test's lookups go back to the process's pool


def test_get_or_add_answers_a_value_that_is_there_and_leaves_the_other_key_alone(any_cache):
    any_cache.clear()  # the local-memory cache outlives a test
    any_cache.set("t:answer", {"offers": [1]}, 60)
    assert get_or_add(any_cache, "t:answer", "t:lock", {"token": "a"}, 30) == ({"offers": [1]}, False)
    assert any_cache.get("t:lock") is None


def test_get_or_add_takes_the_other_key_when_the_value_is_missing_and_nobody_holds_it(any_cache):
    any_cache.clear()
    assert get_or_add(any_cache, "t:answer", "t:lock", {"token": "a"}, 30) == (None, True)
    assert any_cache.get("t:lock") == {"token": "a"}
    # Held now: the next caller is told so, and the holder's value stays.
    assert get_or_add(any_cache, "t:answer", "t:lock", {"token": "b"}, 30) == (None, False)
    assert any_cache.get("t:lock") == {"token": "a"}


def test_get_or_add_on_redis_is_one_round_trip_and_the_key_it_adds_expires(redis_cache, redis_round_trips):
    get_or_add(redis_cache, "t:answer", "t:warm", 1, 30)  # the script is loaded on first use
    redis_round_trips.clear()
    assert get_or_add(redis_cache, "t:answer", "t:lock", {"token": "a"}, 30) == (None, True)
    assert redis_round_trips == [["EVALSHA"]]
    key = redis_cache.make_and_validate_key("t:lock")
    assert 0 < redis_cache._cache.get_client(key).ttl(key) <= 30


def test_get_or_add_elsewhere_returns_a_value_left_between_its_read_and_its_add(settings):
    # Not one atomic step there: an answer left just before the lock is taken is read, and the lock dropped,
    # so an add it reports was always made while the value was missing.
    settings.CACHES = {**settings.CACHES, "other": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    other = caches["other"]
    other.clear()
    real_add = other.add

    def add_after_an_answer(key, value, timeout):
        other.set("answer", "left by the holder before", 60)
        return real_add(key, value, timeout)

    with mock.patch.object(other, "add", add_after_an_answer):
        assert get_or_add(other, "answer", "lock", {"token": "a"}, 30) == ("left by the holder before", False)
    assert other.get("lock") is None
