"""A worker's database connection around tasks: kept from task to task as Django keeps it from request to
request (CONN_MAX_AGE, health checks), closed when it is obsolete or broken, and checked before a task only when
it was last checked or opened a second ago or more (config.celery.KeepConnectionsFixup)."""

import time
from types import SimpleNamespace

import pytest
from django.db import connection, connections

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


@pytest.fixture
def health_checks(monkeypatch):
    """The health checks (Django's SELECT 1 before a kept connection's first query) made from now on, in
    `.made`; with `.failing` set, each finds the connection broken."""
    checks = SimpleNamespace(made=0, failing=False)
    wrapper = connections["default"]
    is_usable = wrapper.is_usable

    def counted():
        checks.made += 1
        return is_usable() and not checks.failing

    monkeypatch.setattr(wrapper, "is_usable", counted)
    return checks


def _worker_runs_a_task_with_a_query():
    fixup = app._fixups[0].worker_fixup
    fixup.on_task_prerun(sender=shipment_send)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 2")
    fixup.on_task_postrun(sender=shipment_send)


@pytest.fixture
def kept_connection(settings):
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] or pytest.skip("health checks are off in these settings")
    connection.ensure_connection()
    connection.close_at = time.monotonic() + 60
    return connection.connection


def test_tasks_back_to_back_check_their_connection_once(kept_connection, health_checks):
    for _ in range(5):
        _worker_runs_a_task_with_a_query()
    assert health_checks.made == 1  # the first task's (Django's rule checked it before every one: 5)
    assert connection.connection is kept_connection


def test_a_connection_checked_long_enough_ago_is_checked_again(kept_connection, health_checks, monkeypatch):
    fixup = app._fixups[0].worker_fixup
    _worker_runs_a_task_with_a_query()
    monkeypatch.setattr(fixup, "health_check_interval", 0.0)  # as if the interval had passed since
    _worker_runs_a_task_with_a_query()
    _worker_runs_a_task_with_a_query()
    assert health_checks.made == 3


def test_a_connection_that_failed_its_check_is_replaced_before_the_task_and_the_new_one_trusted(
    kept_connection, health_checks, monkeypatch
):
    fixup = app._fixups[0].worker_fixup
    monkeypatch.setattr(fixup, "health_check_interval", 0.0)
    _worker_runs_a_task_with_a_query()
    health_checks.failing = True
    _worker_runs_a_task_with_a_query()  # checked, found broken, replaced before its query
    replaced = connection.connection
    assert replaced is not kept_connection
    health_checks.failing = False
    monkeypatch.setattr(fixup, "health_check_interval", 60.0)
    checks = health_checks.made
    _worker_runs_a_task_with_a_query()
    assert health_checks.made == checks  # opened by the task before: not checked again
    assert connection.connection is replaced
