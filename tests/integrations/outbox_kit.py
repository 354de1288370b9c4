"""Test kit for the outbox: a broker that is down, a lost message, a worker that died mid-run.

Each failure is made for real where it can be: `broker_down` points the Celery
app at a Redis port nobody listens on (Celery raises the same
kombu OperationalError as when the real Redis is down), `redis_broker` sends to
the real Redis (REDIS_URL) so a message can be lost by emptying its queue.
"""

import contextlib
import datetime as dt

from django.utils import timezone

from config.celery import app as celery_app
from integrations import outbox

CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"


@contextlib.contextmanager
def broker_at(url):
    """Send every task to `url` (a fresh connection pool), then back to the test broker."""
    conf = celery_app.conf
    saved = conf.get("broker_write_url"), conf.task_publish_retry, celery_app._pool, celery_app.amqp._producer_pool
    # The write URL: the broker URL comes from the environment (CELERY_BROKER_URL), which wins over conf.
    conf["broker_write_url"] = url
    conf.task_publish_retry = False  # fail at once instead of Celery's three quick reconnects
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    try:
        yield
    finally:
        conf["broker_write_url"], conf.task_publish_retry, celery_app._pool, celery_app.amqp._producer_pool = saved


def broker_down():
    return broker_at(CLOSED_PORT_BROKER)


@contextlib.contextmanager
def eager_tasks():
    """Tasks sent by the sweeper run inline, as a worker would run them."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = previous


def make_overdue(row, *, seconds=1):
    """What a lost message or a dead worker leaves: the row due, its next attempt already past."""
    type(row).objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - dt.timedelta(seconds=seconds))


def sweep(**kwargs):
    """One sweep with its tasks run inline; returns the sweep's result."""
    with eager_tasks():
        return outbox.outbox_sweep(**kwargs)


def next_attempt(row):
    return type(row).objects.values_list("next_attempt_at", flat=True).get(pk=row.pk)
