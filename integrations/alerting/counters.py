"""Per-minute counters in the shared cache, for figures no table records (refused webhook signatures).

A refused delivery stores nothing (that is the inbox's contract), so the
threshold check cannot count rows: each refusal adds one to its provider's
counter for the current minute, kept two hours.
"""

import logging
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)
KEEP_SECONDS = 2 * 3600


def _key(name, provider, minute):
    return f"alertcount:{name}:{provider}:{minute}"


def count(name, provider, now=None):
    minute = int((now if now is not None else time.time()) // 60)
    key = _key(name, provider, minute)
    try:
        cache.add(key, 0, KEEP_SECONDS)
        cache.incr(key)
    except Exception:  # noqa: BLE001 - a counter must never cost a webhook its answer
        logger.warning("alert counter not counted", exc_info=True, extra={"counter": name})


def total(name, provider, *, minutes, now=None):
    """The sum of the last `minutes` whole minutes, the current one included."""
    minute = int((now if now is not None else time.time()) // 60)
    keys = [_key(name, provider, m) for m in range(minute - minutes + 1, minute + 1)]
    try:
        return sum(int(v) for v in cache.get_many(keys).values())
    except Exception:  # noqa: BLE001
        logger.warning("alert counter not read", exc_info=True, extra={"counter": name})
        return 0


def signature_failure_count(*, provider, now=None):
    count("webhook_signature", provider, now)


def signature_failures(*, provider, minutes, now=None):
    return total("webhook_signature", provider, minutes=minutes, now=now)
