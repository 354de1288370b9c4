"""Helpers for async request paths (the AI endpoints under ASGI).

    payload = await db_hop(book_answer, result, cost=cost)

`db_hop` runs a piece of synchronous, database-touching work in the request's
thread (Django's thread-sensitive `sync_to_async`), then hands the connection
back to the pool when the web server runs with one (DATABASE_POOL): a stream
that lasts a minute then holds a database connection only for the
milliseconds its bookings take, not for the whole minute.
"""

from asgiref.sync import sync_to_async
from django.db import connections


def release_connections():
    """Return pooled connections opened by this thread (never inside a transaction)."""
    for conn in connections.all(initialized_only=True):
        if conn.settings_dict.get("OPTIONS", {}).get("pool") and not conn.in_atomic_block:
            conn.close()


def _hop(fn, args, kwargs):
    try:
        return fn(*args, **kwargs)
    finally:
        release_connections()


async def db_hop(fn, /, *args, **kwargs):
    """`fn(*args, **kwargs)` off the event loop, its pooled connection released after."""
    return await sync_to_async(_hop)(fn, args, kwargs)
