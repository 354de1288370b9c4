"""The answer cache: deterministic requests (temperature 0, or cache=true) answered from Redis (without
REDIS_URL, from a table of the hub's database)."""

import datetime as dt
import hashlib
import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from integrations.aio import db_hop
from integrations.redis import aget_client, get_client
from integrations.redis import key as redis_key

from ..models import CachedAnswer


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
    # The owner's id leads the digest so that erasure can find (and delete) every answer of theirs.
    return f"{_owner_prefix(owner_id)}{hashlib.sha256(blob.encode()).hexdigest()}"


def _owner_prefix(owner_id):
    return f"ai:completion:{owner_id}:"


def _owner_of(key):
    return int(key.split(":")[2])  # ai:completion:<owner>:<digest>


def cache_clear_owner(*, owner_id):
    """Erasure: delete every cached answer of `owner_id` now (an answer quotes what they asked); how many.

    Both stores, whichever is in use: a hub that gained REDIS_URL may still hold answers in the table.
    """
    deleted = CachedAnswer.objects.filter(owner_id=owner_id).delete()[0]
    client = get_client()
    if client is None:
        return deleted
    batch = []
    for k in client.scan_iter(match=redis_key(_owner_prefix(owner_id)) + "*", count=500):
        batch.append(k)
        if len(batch) >= 500:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


# Without Redis (make run) the answers live in a table, not in Django's local-memory cache, which is one
# per process: the erasure runs in the worker and must reach what the web process cached (CachedAnswer).


def _row_get(key):
    return CachedAnswer.objects.filter(key=key, expires_at__gt=timezone.now()).values_list("value", flat=True).first()


def _row_set(key, value):
    now = timezone.now()
    CachedAnswer.objects.filter(expires_at__lte=now).delete()  # what expired goes, so the table stays small
    CachedAnswer.objects.update_or_create(
        key=key,
        defaults={
            "owner_id": _owner_of(key),
            "value": value,
            "expires_at": now + dt.timedelta(seconds=settings.AI_CACHE_TTL_SECONDS),
        },
    )


async def cache_get(key):
    client = aget_client()
    if client is None:
        return await db_hop(_row_get, key)
    raw = await client.get(redis_key(key))
    return json.loads(raw) if raw else None


async def cache_set(key, value):
    if settings.AI_CACHE_TTL_SECONDS <= 0:
        return  # a TTL of 0 keeps nothing, as with Django's cache
    client = aget_client()
    if client is None:
        await db_hop(_row_set, key, value)
        return
    await client.set(redis_key(key), json.dumps(value, cls=DjangoJSONEncoder), ex=settings.AI_CACHE_TTL_SECONDS)


def cacheable(payload):
    return {k: v for k, v in payload.items() if k not in ("cached", "fallbacks", "cost_usd")}
