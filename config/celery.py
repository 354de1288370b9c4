"""Celery application: JSON only, late acks, one queue per provider group.

Tasks are routed by the app that defines them, so a slow provider group
(documents, ai) never starves another; workers choose queues with -Q.

A worker keeps its database connection from task to task for as long as
CONN_MAX_AGE allows, as a web process does from request to request
(`KeepConnectionsFixup`).
"""

import os
import threading
import time

from celery import Celery
from celery.fixups.django import DjangoFixup, DjangoWorkerFixup
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# filesystem:// (make run without Redis) with messages written whole before a worker can take them.
TRANSPORT_ALIASES["filesystem"] = "config.kombu_filesystem:Transport"
# redis:// and rediss:// (the default broker) without a new redis-py client object per publish, receive and ack.
TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = "config.kombu_redis:Transport"


class KeepConnectionsFixup(DjangoWorkerFixup):
    """Celery's Django worker fix-up, with Django's own rule for closing connections around each task.

    Celery's closes every database connection before and after every task
    (unless CELERY_DB_REUSE_MAX is set), so each task opened a new PostgreSQL
    connection: a fee look-up or a failure notice paid more CPU connecting (in
    the worker and in a new PostgreSQL backend) than on its own queries
    (issue 11). Here a connection is closed around a task only when it is
    broken, left in a transaction, or older than CONN_MAX_AGE, and
    CONN_HEALTH_CHECKS checks it before its next use: what Django does
    around every request. A forked child still drops the parent's connection
    (on_worker_process_init is Celery's).

    Django's rule also checks a kept connection (SELECT 1) before the first query of every request, here
    of every task: one more PostgreSQL round trip per task, for tasks that run hundreds a second per
    process (bench_scaleout's outbound jobs: 1 of their 2 round trips to PostgreSQL). A connection
    checked or opened less than `health_check_interval` seconds ago (counted from the start of the task
    in which that happened) is not checked again before the next task; one idle longer is, as before.
    What that gives up: a connection broken within that second (PostgreSQL restarted, a proxy dropped
    it) fails the next task's first query instead of being replaced before it, as it would fail a query
    of the task that was running when it broke; the task is retried like any database error.
    """

    #: Seconds a checked (or new) connection is trusted without checking it again before a task.
    health_check_interval = 1.0

    def __init__(self, app):
        super().__init__(app)
        self._local = threading.local()  # per thread, as Django's connections are

    def close_database(self, **kwargs):
        for conn in self._db.connections.all(initialized_only=True):
            conn.close_if_unusable_or_obsolete()

    def on_task_prerun(self, sender, **kwargs):
        super().on_task_prerun(sender, **kwargs)
        if getattr(sender.request, "is_eager", False):
            return
        local = self._local
        local.started = now = time.monotonic()
        checked = getattr(local, "checked", None)
        if checked is None:
            checked = local.checked = {}  # alias -> (the raw connection, when it was last checked or opened)
        local.trusted = {}
        for conn in self._db.connections.all(initialized_only=True):
            raw, at = checked.get(conn.alias, (None, 0.0))
            fresh = raw is not None and raw is conn.connection and now - at < self.health_check_interval
            if fresh and conn.health_check_enabled:
                conn.health_check_done = True  # Django's own flag: checked for this task already
                local.trusted[conn.alias] = raw

    def on_task_postrun(self, sender, **kwargs):
        if not getattr(sender.request, "is_eager", False):
            local = self._local
            checked = getattr(local, "checked", None)
            trusted = getattr(local, "trusted", {})
            for conn in self._db.connections.all(initialized_only=True):
                raw = conn.connection
                # Checked during this task (its first query), or opened during it: from the task's start on.
                checked_now = raw is not None and conn.health_check_done and trusted.get(conn.alias) is not raw
                if checked is not None and checked_now:
                    checked[conn.alias] = (raw, local.started)
        super().on_task_postrun(sender, **kwargs)


class HubDjangoFixup(DjangoFixup):
    """Celery's Django fix-up with KeepConnectionsFixup in workers (built when a worker starts: settings are
    read then, not while this module is imported from the settings' own import of `config`)."""

    @property
    def worker_fixup(self):
        if self._worker_fixup is None:
            self._worker_fixup = KeepConnectionsFixup(self.app)
        return self._worker_fixup


def django_fixup(app):
    """What celery.fixups.django.fixup installs (Celery's only built-in fix-up), as HubDjangoFixup."""
    return HubDjangoFixup(app).install() if os.environ.get("DJANGO_SETTINGS_MODULE") else None


app = Celery("hub", fixups=["config.celery:django_fixup"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

QUEUE_BY_APP = {
    "payments": "payments",
    "messaging": "messaging",
    "ai": "ai",
    "documents": "documents",
    "scheduling": "scheduling",
    "travel": "travel",
}


def route_by_module(name, args, kwargs, options, task=None, **kw):
    """Route `payments.tasks.x` (or a task named `payments.x`) to the payments queue."""
    app_label = name.split(".", 1)[0]
    return {"queue": QUEUE_BY_APP.get(app_label, "default")}
