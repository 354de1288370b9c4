"""A serving worker collects garbage less often than Python's default (config.warmup.collect_less)."""

import gc

from asgiref.sync import async_to_sync

from config import warmup
from integrations import aio


def test_a_worker_starts_with_the_young_collection_threshold_raised_even_when_warming_fails(monkeypatch):
    async def unreachable(*args, **kwargs):
        raise ConnectionError("database down")

    monkeypatch.setattr(aio, "db_hop", unreachable)
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        async_to_sync(warmup.warm_loop)(app=None)
        assert gc.get_threshold() == (warmup.YOUNG_COLLECTION_THRESHOLD, *before[1:])
    finally:
        gc.set_threshold(*before)
