"""A worker's database connection around tasks: kept from task to task as Django keeps it from request to
request (CONN_MAX_AGE, health checks), closed when it is obsolete or broken (config.celery.KeepConnectionsFixup)."""

import time

import pytest
from django.db import connection

from config.celery import KeepConnectionsFixup, app
from tests.testapp.tasks import shipment_send

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _worker_runs_a_task():
    # What Celery's Django fix-up does in a worker around every task (a non-eager run).
    fixup = app._fixups[0].worker_fixup
    assert isinstance(fixup, KeepConnectionsFixup)
    assert not shipment_send.request.is_eager
    fixup.on_task_prerun(sender=shipment_send)
    connection.ensure_connection()  # the task's own queries
    fixup.on_task_postrun(sender=shipment_send)


def test_a_worker_keeps_its_connection_from_task_to_task():
    connection.ensure_connection()
    connection.close_at = time.monotonic() + 60
    raw = connection.connection
    _worker_runs_a_task()
    _worker_runs_a_task()
    assert connection.connection is raw


def test_a_connection_older_than_conn_max_age_is_closed_after_the_task():
    connection.ensure_connection()
    connection.close_at = time.monotonic() + 60
    raw = connection.connection
    app._fixups[0].worker_fixup.on_task_prerun(sender=shipment_send)
    connection.close_at = time.monotonic() - 1
    app._fixups[0].worker_fixup.on_task_postrun(sender=shipment_send)
    assert connection.connection is None
    connection.ensure_connection()
    assert connection.connection is not raw


def test_a_connection_left_in_a_transaction_is_closed_after_the_task():
    connection.ensure_connection()
    connection.close_at = time.monotonic() + 60
    connection.set_autocommit(False)
    app._fixups[0].worker_fixup.on_task_postrun(sender=shipment_send)
    assert connection.connection is None
    connection.set_autocommit(True)
