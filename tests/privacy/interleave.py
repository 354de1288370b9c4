"""A writer of a user's rows caught between its insert and its commit while the user's erasure runs (PostgreSQL)."""

import threading
import time

from django.db import connection

from privacy import erasure as erasure_service


def commit_held_through_an_erasure(monkeypatch, module, name, write, erasure):
    """Run `write()` in a thread with `module.<name>` (what inserts the rows, in the writer's transaction) held after
    it returns and before the commit; start `erasure`'s run in another thread; let the writer commit once the
    erasure waits on an advisory lock (or has returned without waiting, as it did before the lock). `erasure`: the
    Erasure to run, or a function that gives it once the rows are inserted (one requested during `write()`, after
    the request it makes was authenticated).

    Returns {"write": what write() returned, "erasure": the run's status}."""
    inside, go = threading.Event(), threading.Event()
    inserted = getattr(module, name)

    def held_before_its_commit(*args, **kwargs):
        rows = inserted(*args, **kwargs)
        inside.set()
        go.wait(30)
        return rows

    monkeypatch.setattr(module, name, held_before_its_commit)
    outcome = {}

    def in_a_thread(key, work):
        def run():
            try:
                outcome[key] = work()
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    writer = in_a_thread("write", write)
    assert inside.wait(30)  # the rows are inserted, not yet committed
    due = erasure() if callable(erasure) else erasure
    eraser = in_a_thread("erasure", lambda: erasure_service.erasure_run(erasure_id=due.pk, now=due.scheduled_for))
    deadline = time.monotonic() + 30
    while eraser.is_alive() and time.monotonic() < deadline and not _waiting_for_an_advisory_lock():
        time.sleep(0.01)
    go.set()
    writer.join(30)
    eraser.join(30)
    return outcome


def _waiting_for_an_advisory_lock():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0] > 0
