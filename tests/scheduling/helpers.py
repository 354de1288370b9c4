import datetime as dt

from django.db import connection

URL = "/api/v1/scheduling/meetings/"


def later(days=7):
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0).isoformat()


def body(provider, **extra):
    return {"provider": provider, "topic": "Quarterly review", "start_time": later(), "duration_minutes": 45,
            "time_zone": "Europe/Berlin", **extra}  # fmt: skip


def committed_now(fn, *args, **kwargs):
    """Run `fn` as if its own transaction committed right away: what it queued on commit runs now, and only now
    (taken out of the test's transaction, so an enclosing capture of on-commit callbacks does not run it again).
    For work that happens while another run waits on a provider's answer."""
    queued = connection.run_on_commit
    start = len(queued)
    result = fn(*args, **kwargs)
    while len(queued) > start:
        _, callback, _ = queued.pop(start)
        callback()
    return result
