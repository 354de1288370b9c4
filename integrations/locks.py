"""One holder at a time of a named thing, across every process: a Redis lock, or a file lock on this machine
without Redis (`make run`). The OAuth refresh and the mail sync each guard a connection with it."""

import contextlib

from . import localstate
from .errors import ProviderUnavailable
from .redis import get_client, key


@contextlib.contextmanager
def held(kind, ident, *, seconds, wait, provider, busy, retry_after):
    """Hold `kind`:`ident` for the block (at most `seconds`, then it lapses); a caller that waited `wait` seconds
    for it in vain gets ProviderUnavailable(`provider`, `busy`) with `retry_after`: a 503 from the API, a retry
    for a task."""
    client = get_client()
    if client is None:
        with localstate.locked(f"{kind}:{ident}"):
            yield
        return
    lock = client.lock(key(kind, ident), timeout=seconds, blocking_timeout=wait)
    if not lock.acquire():
        raise ProviderUnavailable(provider, busy, retry_after=retry_after)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # lapsed under us: what the lock guards is read again by the next holder
            lock.release()
