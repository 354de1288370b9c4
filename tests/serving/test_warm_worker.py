"""What each web worker warms after the fork, on its own event loop and threads (config.warmup.warm_loop).

The master's warm-up (config.warmup.warm) is shared by every worker, but a forked worker's first request
still copied every page of the master's it wrote to (~1,400 page faults), opened the first connection
through the SDKs' transport and ran on threads that did not exist yet: ~8 ms of CPU more than its
twentieth (tests/serving/test_warm_start.py is the end-to-end check).
"""

import pytest
from asgiref.sync import async_to_sync

from config import warmup
from integrations import aio


def test_a_workers_dry_run_sends_each_sdk_request_through_the_real_transport_to_a_listener_of_its_own(monkeypatch):
    asked = []
    answer_for = warmup._answer_for
    monkeypatch.setattr(warmup, "_answer_for", lambda path: asked.append(path) or answer_for(path))

    async_to_sync(warmup._sdk_on_this_loop)(passes=2)

    # Both SDKs' requests reached the worker's own loopback listener (a socket, not a mock transport), twice.
    assert asked == ["/v1/chat/completions", "/v1/messages"] * 2


@pytest.mark.django_db(transaction=True)
def test_every_db_hop_thread_is_started_before_the_first_request(settings):
    settings.DB_HOP_THREADS = 3  # the pool's hop threads (2 in production); 3: an executor no other test started
    threads = aio._threads(settings.DB_HOP_THREADS)

    async_to_sync(warmup._hop_threads)()

    assert len(threads._threads) == 3 and all(thread.is_alive() for thread in threads._threads)


@pytest.mark.redis
@pytest.mark.django_db
def test_the_limiters_blocking_redis_client_is_connected_before_the_first_request(settings, redis_round_trips):
    """An AI request sends its first provider's rate tokens on it from its hold hop: no connection set-up then."""
    from integrations import limiter
    from integrations import redis as hub_redis

    settings.RATE_LIMITS = {"warm": {"requests": {"rate": 1, "burst": 10}}}
    limiter.send_take("warm", reserve=False, max_wait=0, breaker_key="warm-cb").answer()  # Redis knows the script
    hub_redis._client.cache_clear()  # this worker's pool as after the fork: nothing opened yet
    warmup.warm_worker()
    redis_round_trips.clear()
    limiter.send_take("warm", reserve=False, max_wait=0, breaker_key="warm-cb").answer()
    assert redis_round_trips == [["EVALSHA"]]
