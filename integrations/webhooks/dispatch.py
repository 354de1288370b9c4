"""Asking for a drain: at most one queued drain per provider, however many events arrive.

Every stored event asks for a drain of its provider after commit. With Redis,
a short-lived flag (SET NX with a TTL) says a drain is already queued, so a
burst of 500 deliveries queues one or two drains instead of 500 tasks: the
ack path pays one Redis round trip, the worker one task per batch. The drain
clears the flag *before* it claims, so an event committed after the clear
queues a new drain and an event committed before it is seen by the claim:
none is left behind. The flag's TTL bounds the damage of a lost message
(the next event after it queues a drain again) and the beat sweeper drains
whatever stayed ready anyway.

Without Redis (`make run`: SQLite, the filesystem broker, one process per
role) there is no flag every process sees, so every event queues a drain; a
drain with nothing left to claim costs one query.
"""

import functools
import logging

from django.conf import settings
from django.db import transaction

from ..redis import get_client, key

logger = logging.getLogger(__name__)

_task = None


def _drain_task():
    # Imported on first use, not at module import: tasks.py imports processing.py, which imports this module.
    global _task
    if _task is None:
        from .tasks import webhook_drain_task

        _task = webhook_drain_task
    return _task


def _flag(provider):
    return key("webhook-drain-queued", provider)


def request_drain(provider, *, force=False):
    """Queue a drain of `provider`'s events unless one is already queued (or `force`). True if one was sent."""
    client = get_client()
    if client is not None and not force:
        try:
            # SET NX PX as the command itself: Redis.set()'s keyword handling cost ~6 us of the ~45 of the call.
            ttl_ms = int(settings.WEBHOOK_DRAIN_COALESCE_SECONDS * 1000)
            if not client.execute_command("SET", _flag(provider), 1, "NX", "PX", ttl_ms):
                return False
        except Exception:  # noqa: BLE001 - Redis trouble must not cost the event its drain
            logger.warning("could not check the webhook drain flag; queueing a drain anyway", exc_info=True)
    try:
        _drain_task().apply_async((provider,))
    except Exception:
        # The event is committed; the beat sweeper drains it once the broker is back.
        logger.exception("could not queue a webhook drain", extra={"provider": provider})
        drain_started(provider)  # let the next event try again instead of trusting a flag with no message
        return False
    return True


def request_drain_on_commit(provider):
    """Queue a drain once the surrounding transaction commits (a worker never looks for rows not there yet)."""
    transaction.on_commit(functools.partial(request_drain, provider))


def drain_started(provider):
    """Clear the flag: from now on a newly stored event queues another drain. Called before a drain claims."""
    client = get_client()
    if client is None:
        return
    try:
        client.delete(_flag(provider))
    except Exception:  # noqa: BLE001 - the flag expires by itself; the sweeper covers the gap
        logger.warning("could not clear the webhook drain flag", exc_info=True)
