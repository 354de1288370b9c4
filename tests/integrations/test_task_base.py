import pytest
import responses

from integrations.models import Alert, ProviderCall
from integrations.task_base import backoff_seconds
from tests.integrations import acme
from tests.testapp.models import Shipment
from tests.testapp.tasks import shipment_send

pytestmark = pytest.mark.django_db


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def shipment(fake_provider):
    return Shipment.objects.create(body={"to": "x", "from": "+15550001"})


def test_a_retryable_failure_is_retried_until_it_succeeds(shipment, http, settings):
    settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "acme": {"base": 0.01, "cap": 0.01, "max_retries": 3}}
    http.post(acme.URL, json={}, status=503)
    http.post(acme.URL, json={}, status=500)
    http.post(acme.URL, json={"id": "ext-1", "units": {}})
    shipment_send.apply(args=[shipment.pk])
    shipment.refresh_from_db()
    assert (shipment.state, shipment.external_id) == ("sent", "ext-1")
    assert list(ProviderCall.objects.order_by("id").values_list("attempt", "outcome")) == [
        (1, "error"),
        (2, "error"),
        (3, "ok"),
    ]


def test_a_permanent_failure_is_not_retried_and_gives_up_with_an_alert(shipment, http):
    http.post(acme.URL, json={"code": "invalid_number"}, status=400)
    shipment_send.apply(args=[shipment.pk])
    shipment.refresh_from_db()
    assert shipment.state == "failed" and "HTTP 400" in shipment.error
    assert ProviderCall.objects.count() == 1
    alert = Alert.objects.get(kind="task_failed")
    assert alert.provider == "acme" and "tests.shipment_send" in alert.message


def test_retries_stop_at_the_provider_maximum(shipment, http, settings):
    settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "acme": {"base": 0.01, "cap": 0.01, "max_retries": 2}}
    for _ in range(3):
        http.post(acme.URL, json={}, status=500)
    shipment_send.apply(args=[shipment.pk])
    shipment.refresh_from_db()
    assert shipment.state == "failed"
    assert ProviderCall.objects.count() == 3  # the first attempt and two retries
    assert Alert.objects.filter(kind="task_failed").count() == 1


def test_no_token_defers_the_task_with_its_token_booked_instead_of_sleeping(shipment, http, settings):
    settings.RATE_LIMITS = {"acme": {"requests": {"rate": 0.5, "burst": 1}}}
    from integrations import limiter

    assert limiter.take("acme", "+15550001").granted  # someone else used the only token
    http.post(acme.URL, json={"id": "ext-2", "units": {}})
    shipment_send.apply(args=[shipment.pk])  # eager: the deferred run happens inline
    shipment.refresh_from_db()
    assert shipment.state == "sent"
    # one real attempt only; the deferral was not an attempt and used no retry
    assert list(ProviderCall.objects.values_list("attempt", "outcome")) == [(1, "ok")]


def test_a_redelivered_task_after_worker_loss_never_calls_the_provider_twice(shipment, http):
    """The worker dies after the provider accepted the call but before the row says `sent`."""
    http.post(acme.URL, json={"id": "ext-3", "units": {}})

    class WorkerLost(BaseException):
        pass

    def die_after_the_call(*args, **kwargs):
        raise WorkerLost()

    import tests.testapp.tasks as tasks

    original = tasks._move
    tasks._move = lambda sid, frm, to, **f: die_after_the_call() if to == "sent" else original(sid, frm, to, **f)
    try:
        with pytest.raises(WorkerLost):
            shipment_send.run(shipment.pk)
    finally:
        tasks._move = original
    assert Shipment.objects.get().state == "sending"
    # acks_late + reject_on_worker_lost: the broker hands the message out again
    assert shipment_send.acks_late and shipment_send.reject_on_worker_lost
    assert shipment_send.apply(args=[shipment.pk]).get() == "in_doubt"
    assert len(http.calls) == 1


def test_a_task_for_a_row_already_sent_does_nothing(shipment, http):
    Shipment.objects.filter(pk=shipment.pk).update(state="sent")
    assert shipment_send.apply(args=[shipment.pk]).get() == "skipped"
    assert len(http.calls) == 0


class TestBackoff:
    def test_full_jitter_stays_within_the_exponential_envelope(self):
        for retries in range(8):
            for _ in range(50):
                delay = backoff_seconds(retries, base=2, cap=60)
                assert 0 <= delay <= min(60, 2 * 2**retries)

    def test_retry_after_is_a_floor_never_cut(self):
        assert all(backoff_seconds(0, base=2, cap=60, retry_after=30) >= 30 for _ in range(50))
        assert all(backoff_seconds(0, base=2, cap=60, retry_after=600) == 600 for _ in range(5))


class TestSendsBatched:
    """Tasks enqueued after commit inside sends_batched() are published together when the block ends."""

    @pytest.fixture
    def published(self, monkeypatch):
        sent = []

        def apply_async(args=None, kwargs=None, producer=None, **options):
            sent.append((tuple(args), producer))

        monkeypatch.setattr(shipment_send, "apply_async", apply_async)
        return sent

    def test_they_wait_for_the_end_of_the_block_and_share_one_producer_even_if_it_raises(self, published):
        from integrations.task_base import _send, sends_batched

        with pytest.raises(RuntimeError), sends_batched():
            _send(shipment_send, (1,), {}, None)
            _send(shipment_send, (2,), {}, None)
            assert published == []
            raise RuntimeError("after the commit: its messages must still go out")
        assert [args for args, _ in published] == [(1,), (2,)]
        assert published[0][1] is not None and published[0][1] is published[1][1]

    def test_outside_a_block_and_in_eager_runs_each_is_sent_at_once(self, published, settings):
        from integrations.task_base import _send, sends_batched

        _send(shipment_send, (1,), {}, None)
        assert published == [((1,), None)]
        from config.celery import app

        app.conf.task_always_eager, before = True, app.conf.task_always_eager
        try:
            with sends_batched():
                _send(shipment_send, (2,), {}, None)
                assert published[-1] == ((2,), None)
        finally:
            app.conf.task_always_eager = before


def test_held_messages_of_a_task_with_a_batch_form_leave_as_batch_messages_of_at_most_the_limit(monkeypatch):
    from types import SimpleNamespace

    from integrations import task_base

    single, batch, other = (SimpleNamespace(name=name) for name in ("t.one", "t.many", "t.other"))
    monkeypatch.setitem(task_base._batch_forms, "t.one", (batch, False))
    held = [(single, (pk,), {}, None) for pk in range(task_base.BATCH_SEND_MAX + 5)] + [(other, (7,), {}, None)]
    assert task_base._merged(held) == [
        (other, (7,), {}),
        (batch, (list(range(task_base.BATCH_SEND_MAX)),), {}),
        (batch, (list(range(task_base.BATCH_SEND_MAX, task_base.BATCH_SEND_MAX + 5)),), {}),
    ]
    assert task_base._merged([(single, (3,), {}, None)]) == [(single, (3,), {})]  # alone: as itself
