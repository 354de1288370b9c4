"""The answer cache: deterministic requests (temperature 0, or cache=true) answered from Redis."""

import hashlib
import json

from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder

from integrations.redis import aget_client
from integrations.redis import key as redis_key


def use_cache(params):
    if params.get("cache") is False:
        return False
    return params.get("cache") is True or params["request"].temperature == 0


def cache_key(*, owner_id, params):
    """A digest of everything that decides the answer. Never key material: the
    provider keys are not part of it, and the user appears only by id (answers
    are not shared between users, so a cache hit reveals nobody else's prompt)."""
    blob = json.dumps(
        {
            "v": 1,
            "owner": owner_id,
            "task": params.get("task") or "",
            "model": params.get("model") or "",
            "provider": params.get("provider") or "",
            **params["request"].canonical(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return "ai:completion:" + hashlib.sha256(blob.encode()).hexdigest()


async def cache_get(key):
    client = aget_client()
    if client is None:
        return await cache.aget(key)
    raw = await client.get(redis_key(key))
    return json.loads(raw) if raw else None


async def cache_set(key, value):
    if settings.AI_CACHE_TTL_SECONDS <= 0:
        return  # a TTL of 0 keeps nothing, as with Django's cache
    client = aget_client()
    if client is None:
        await cache.aset(key, value, settings.AI_CACHE_TTL_SECONDS)
        return
    await client.set(redis_key(key), json.dumps(value, cls=DjangoJSONEncoder), ex=settings.AI_CACHE_TTL_SECONDS)


def cacheable(payload):
    return {k: v for k, v in payload.items() if k not in ("cached", "fallbacks", "cost_usd")}
