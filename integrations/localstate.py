"""Shared state for one machine when there is no Redis (the `make run` default).

Each named state is a small JSON file under var/state/, read and written under
an exclusive `flock`, so the web process, every worker process and beat on the
same machine see one limiter bucket and one breaker per key. Production uses
Redis (Lua scripts) instead; this is only the single-machine fallback.
"""

import contextlib
import fcntl
import hashlib
import json
import os

from django.conf import settings


def _path(name):
    directory = settings.VAR_DIR / "state"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / hashlib.sha1(name.encode()).hexdigest()


@contextlib.contextmanager
def locked(name):
    """Yield the state dict for `name`; changes are saved when the block ends."""
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            raw = fh.read()
            state = json.loads(raw) if raw else {}
            before = dict(state)
            yield state
            if state != before:
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(state))
                fh.flush()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read(name):
    """The state for `name` without changing it (under a shared lock, so never half-written)."""
    try:
        fh = open(_path(name))  # noqa: SIM115 - closed by the `with fh` below, after the existence check
    except FileNotFoundError:
        return {}
    with fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        try:
            raw = fh.read()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return json.loads(raw) if raw else {}
