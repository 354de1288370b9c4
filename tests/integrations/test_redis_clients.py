"""The asyncio Redis client of the async request path under a burst larger than its pool."""

import asyncio

import pytest
from asgiref.sync import async_to_sync

from integrations import redis as hub_redis

pytestmark = pytest.mark.redis


def test_more_concurrent_calls_than_the_pool_holds_wait_for_a_connection_instead_of_failing():
    calls = hub_redis.ASYNC_MAX_CONNECTIONS + 50

    async def burst():
        client = hub_redis.aget_client()
        # Each BLPOP holds its connection for 0.2 s, so the pool is exhausted while they run.
        return await asyncio.gather(*(client.blpop(hub_redis.key("empty", n), timeout=0.2) for n in range(calls)))

    assert async_to_sync(burst)() == [None] * calls
