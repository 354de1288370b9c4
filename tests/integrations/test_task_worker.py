"""The task base inside a real Celery worker (threads, in-memory broker): retries with a
countdown and limiter deferrals go through the broker, not through eager shortcuts."""

import time

import pytest
import responses
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django.test import override_settings

from config.celery import app
from integrations.models import ProviderCall
from tests.integrations import acme
from tests.testapp.models import Shipment
from tests.testapp.tasks import shipment_send

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(scope="module")
def _running_worker(django_db_blocker):
    # The worker keeps a connection per pool thread for CONN_MAX_AGE (config.celery.KeepConnectionsFixup):
    # at 0 each is closed after its task, so none outlives the worker and holds on to the test database.
    conf = connection.settings_dict
    max_age, conf["CONN_MAX_AGE"] = conf["CONN_MAX_AGE"], 0
    try:
        # These tests read a job's call rows as soon as its domain row is done: written by the task itself,
        # not handed off to be written a moment later (gateway.handoff, tested in test_call_log_handoff.py).
        with django_db_blocker.unblock(), override_settings(CALL_LOG_HANDOFF=False):
            with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10):
                yield
    finally:
        conf["CONN_MAX_AGE"] = max_age


@pytest.fixture
def worker(_running_worker, fake_provider, settings):
    settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "acme": {"base": 0.05, "cap": 0.1, "max_retries": 3}}


def _wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_retryable_failure_is_retried_through_the_broker(worker):
    shipment = Shipment.objects.create(body={"from": "+15550001"})
    with responses.RequestsMock() as http:
        http.post(acme.URL, json={}, status=503)
        http.post(acme.URL, json={"id": "ext-w1", "units": {}})
        shipment_send.delay(shipment.pk)
        assert _wait_for(lambda: Shipment.objects.get(pk=shipment.pk).state == "sent")
    assert list(ProviderCall.objects.order_by("id").values_list("attempt", "outcome")) == [(1, "error"), (2, "ok")]


def test_a_burst_is_paced_by_the_limiter_without_losing_one(worker, settings):
    settings.RATE_LIMITS = {"acme": {"requests": {"rate": 10, "burst": 1}}}
    shipments = [Shipment.objects.create(body={"from": "+15550009"}) for _ in range(5)]
    started = time.monotonic()
    with responses.RequestsMock() as http:
        for i in range(5):
            http.post(acme.URL, json={"id": f"ext-b{i}", "units": {}})
        for s in shipments:
            shipment_send.delay(s.pk)
        assert _wait_for(lambda: Shipment.objects.filter(state="sent").count() == 5)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.35  # 1 at once, then one every 0.1 s
    calls = list(ProviderCall.objects.values_list("attempt", "outcome"))
    assert calls == [(1, "ok")] * 5  # deferrals are not attempts and never reached the provider
