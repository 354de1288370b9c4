"""The outbox mechanism: one sweeper, claims under SKIP LOCKED, backoff, the stuck alert, time limits."""

import datetime as dt
import importlib
import re
import threading
import types

import pytest
from django.db import connection, transaction
from django.utils import timezone

from config.celery import app as celery_app
from integrations import outbox
from integrations.models import Alert
from messaging.models import SmsMessage
from tests.integrations.outbox_kit import make_overdue, next_attempt
from tests.messaging.factories import SmsFactory
from tests.testapp.models import Shipment

SMS = "messaging.sms_send"


def hard_limit(task):
    return task.time_limit or celery_app.conf.task_time_limit


def soft_limit(task):
    return task.soft_time_limit or celery_app.conf.task_soft_time_limit


class TestTimeLimits:
    def test_every_task_has_a_soft_limit_below_its_hard_limit(self):
        celery_app.loader.import_default_modules()
        tasks = {name: t for name, t in celery_app.tasks.items() if not name.startswith("celery.")}
        assert len(tasks) > 20
        for name, task in tasks.items():
            assert hard_limit(task), name
            assert 0 < soft_limit(task) < hard_limit(task), name

    def test_the_visibility_timeout_is_slightly_more_than_the_longest_hard_limit(self, settings):
        celery_app.loader.import_default_modules()
        longest = max(hard_limit(t) for name, t in celery_app.tasks.items() if not name.startswith("celery."))
        assert longest < settings.CELERY_VISIBILITY_TIMEOUT_SECONDS <= longest + 120
        # A retry's countdown never outlasts it either (a held countdown message would be handed out twice).
        assert max(p["cap"] for p in settings.PROVIDER_RETRY.values()) < settings.CELERY_VISIBILITY_TIMEOUT_SECONDS

    def test_a_redis_broker_gets_that_visibility_timeout(self, monkeypatch):
        from config.settings import celery as celery_settings

        monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
        try:
            reloaded = importlib.reload(celery_settings)
            assert reloaded.CELERY_BROKER_TRANSPORT_OPTIONS == {
                "visibility_timeout": reloaded.CELERY_VISIBILITY_TIMEOUT_SECONDS
            }
            assert reloaded.CELERY_VISIBILITY_TIMEOUT_SECONDS < 3600
        finally:
            monkeypatch.undo()
            importlib.reload(celery_settings)

    def test_the_sweeper_runs_at_least_once_a_minute(self, settings):
        entry = settings.CELERY_BEAT_SCHEDULE["integrations.outbox_sweep"]
        assert entry["task"] == "integrations.outbox_sweep" and entry["schedule"] <= 60


@pytest.mark.django_db
class TestRegistry:
    def test_a_model_without_the_mixin_cannot_be_registered(self):
        from tests.testapp.tasks import shipment_send

        with pytest.raises(TypeError, match="OutboxMixin"):
            outbox.register(Shipment, shipment_send, due_states=("queued",))

    def test_every_registered_kind_is_known_by_its_task(self):
        names = {kind.name for kind in outbox.kinds()}
        assert SMS in names
        assert outbox.kind_for(SMS).model is SmsMessage


def _kind(name):
    return next(kind for kind in outbox.kinds() if kind.name == name)


@pytest.mark.django_db
class TestRunsWriteTheirRow:
    """lease / finished / mark_enqueued, whose SQL is compiled once per process (outbox._update)."""

    def test_a_finished_run_keeps_its_row_while_a_kind_registered_since_still_needs_it(self, monkeypatch):
        sms_send = _kind(SMS)  # every app's kinds registered first, in the real table
        monkeypatch.setattr(outbox, "_KINDS", dict(outbox._KINDS))
        monkeypatch.setattr(outbox, "_statements", {})
        first, second = SmsFactory(status="sent", external_id="SM1"), SmsFactory(status="sent", external_id="SM2")
        for sms in (first, second):
            outbox.mark_enqueued(sms_send, sms.pk)
        outbox.finished(sms_send, first.pk)
        assert next_attempt(first) is None  # sent: no kind of SmsMessage needs it any more
        outbox.register(SmsMessage, types.SimpleNamespace(name="tests.sms_receipt"), due_states=("sent",))
        outbox.finished(sms_send, second.pk)
        assert next_attempt(second) is not None  # the new kind's task has yet to run

    def test_each_run_fills_in_its_own_row_and_time(self, settings):
        queued, other = SmsFactory(status="queued"), SmsFactory(status="queued")
        kind = _kind(SMS)
        outbox.lease(kind, queued.pk)
        settings.OUTBOX_LEASE_SECONDS = 600
        started = timezone.now()
        outbox.lease(kind, other.pk)
        assert next_attempt(queued) < started + dt.timedelta(seconds=300) < next_attempt(other)


@pytest.mark.django_db
class TestSweep:
    def test_a_row_not_yet_due_is_left_alone(self):
        sms = SmsFactory(status="queued")
        SmsMessage.objects.filter(pk=sms.pk).update(next_attempt_at=timezone.now() + dt.timedelta(seconds=20))
        assert outbox.outbox_sweep()["sent"] == {}

    def test_a_row_without_a_next_attempt_is_not_in_the_outbox(self):
        SmsFactory(status="queued")
        assert outbox.outbox_sweep()["sent"] == {}

    def test_each_sweep_backs_off_and_counts(self, settings):
        sms = SmsFactory(status="queued")
        make_overdue(sms)
        now = timezone.now()
        # The test broker is never consumed here: every sent message is lost.
        assert outbox.outbox_sweep(now=now)["sent"] == {SMS: 1}
        sms.refresh_from_db()
        assert sms.outbox_sweeps == 1
        assert sms.next_attempt_at == now + dt.timedelta(seconds=settings.OUTBOX_GRACE_SECONDS)
        assert outbox.outbox_sweep(now=now + dt.timedelta(seconds=1))["sent"] == {}
        later = sms.next_attempt_at
        assert outbox.outbox_sweep(now=later)["sent"] == {SMS: 1}
        sms.refresh_from_db()
        assert sms.next_attempt_at == later + dt.timedelta(seconds=2 * settings.OUTBOX_GRACE_SECONDS)

    def test_the_backoff_is_capped(self, settings):
        assert outbox.backoff_seconds(50) == settings.OUTBOX_BACKOFF_MAX_SECONDS

    def test_rows_still_overdue_after_n_sweeps_raise_one_alert_per_kind(self, settings):
        settings.OUTBOX_ALERT_AFTER_SWEEPS = 3
        rows = [SmsFactory(status="queued") for _ in range(2)]
        now = timezone.now()
        for row in rows:
            make_overdue(row)
        for _ in range(3):
            result = outbox.outbox_sweep(now=now)
            now = max(next_attempt(row) for row in rows)
        assert result["stuck"] == {SMS: 2}
        alert = Alert.objects.get()
        assert alert.kind == Alert.Kind.TASK_FAILED and alert.dedupe_key == f"outbox_stuck:{SMS}"
        assert "2 " in alert.message and SMS in alert.message
        outbox.outbox_sweep(now=now)
        assert Alert.objects.get().occurrences == 2

    def test_the_counts_show_waiting_overdue_and_stuck(self, settings):
        settings.OUTBOX_ALERT_AFTER_SWEEPS = 2
        waiting, overdue, stuck = (SmsFactory(status="queued") for _ in range(3))
        SmsMessage.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now() + dt.timedelta(hours=1))
        make_overdue(overdue)
        SmsMessage.objects.filter(pk=stuck.pk).update(next_attempt_at=timezone.now(), outbox_sweeps=2)
        counts = {c.name: c for c in outbox.outbox_counts()}
        assert (counts[SMS].waiting, counts[SMS].overdue, counts[SMS].stuck) == (1, 2, 1)
        assert counts[SMS].label == "messaging.smsmessage"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
class TestTwoSweepers:
    def test_a_row_locked_by_one_sweeper_is_skipped_by_the_other(self):
        held, free = SmsFactory(status="queued"), SmsFactory(status="queued")
        make_overdue(held)
        make_overdue(free)
        locked, release, result = threading.Event(), threading.Event(), {}

        def first_sweeper():
            try:
                with transaction.atomic():
                    list(SmsMessage.objects.select_for_update().filter(pk=held.pk))
                    locked.set()
                    release.wait(10)
            finally:
                connection.close()

        thread = threading.Thread(target=first_sweeper)
        thread.start()
        try:
            assert locked.wait(10)
            result = outbox.outbox_sweep()
        finally:
            release.set()
            thread.join()
        assert result["sent"] == {SMS: 1}
        assert SmsMessage.objects.get(pk=free.pk).outbox_sweeps == 1
        assert SmsMessage.objects.get(pk=held.pk).outbox_sweeps == 0

    def test_concurrent_sweeps_send_each_row_once(self, monkeypatch, settings):
        settings.OUTBOX_BATCH_SIZE = 5
        from messaging.tasks import sms_send

        rows = [SmsFactory(status="queued") for _ in range(40)]
        for row in rows:
            make_overdue(row)
        sent, lock = [], threading.Lock()

        def record(args=None, **kwargs):
            with lock:
                sent.append(args[0])

        monkeypatch.setattr(sms_send, "apply_async", record)
        start = threading.Barrier(3)

        def sweeper():
            try:
                start.wait(10)
                outbox.outbox_sweep()
            finally:
                connection.close()

        threads = [threading.Thread(target=sweeper) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(sent) == sorted(r.pk for r in rows)


@pytest.mark.django_db
class TestConsole:
    def test_the_overview_shows_overdue_rows_per_kind(self, staff_user, client):
        client.force_login(staff_user)
        make_overdue(SmsFactory(status="queued"))
        SmsMessage.objects.filter(pk=SmsFactory(status="queued").pk).update(
            next_attempt_at=timezone.now() + dt.timedelta(hours=1)
        )
        html = client.get("/admin/").content.decode()
        assert "Task outbox" in html
        row = re.search(rf'<tr data-kind="{SMS}">(.*?)</tr>', html, re.S).group(1)
        assert [int(n) for n in re.findall(r'class="num[^"]*">(\d+)<', row)] == [1, 1, 0]
        assert "/admin/messaging/smsmessage/?next_attempt_at__isnull=False" in row
        assert client.get("/admin/messaging/smsmessage/?next_attempt_at__isnull=False").status_code == 200


def _due_and_done():
    """Per kind: (make a row that needs the task, how the row looks once its task is done)."""
    from tests.documents.factories import DocumentFactory, DocumentVersionFactory
    from tests.messaging.factories import CallFactory
    from tests.payments.factories import PaymentFactory, RefundFactory, SubscriptionFactory, SucceededPaymentFactory
    from tests.scheduling.factories import CalendarFactory, MeetingRecordingFactory

    return {
        "messaging.sms_send": (lambda: SmsFactory(status="queued"), {"status": "sent", "external_id": "SMdone"}),
        "messaging.call_place": (lambda: CallFactory(status="queued"), {"status": "ringing", "external_id": "CAdone"}),
        "payments.refund_send": (lambda: RefundFactory(), {"status": "succeeded", "external_id": "re_done"}),
        "payments.subscription_send": (
            lambda: SubscriptionFactory(pending_operation="cancel_now"),
            {"pending_operation": ""},
        ),
        "payments.payment_fee_record": (lambda: SucceededPaymentFactory(), {"fee_recorded": True}),
        "payments.payment_cancel": (
            lambda: PaymentFactory(invoice__status="void"),
            {"status": "canceled"},
        ),
        "documents.version_scan": (lambda: DocumentVersionFactory(), {"scan_status": "clean"}),
        "documents.version_quarantine": (
            lambda: DocumentVersionFactory(scan_status="infected"),
            {"quarantined_at": timezone.now()},
        ),
        "documents.document_purge": (lambda: DocumentFactory(state="deleting"), {"state": "active"}),
        # A push marked the calendar due; a sync that started clears it.
        "scheduling.calendar_sync": (lambda: CalendarFactory(sync_due=True), {"sync_due": False}),
        "scheduling.recording_copy": (
            lambda: MeetingRecordingFactory(copy_status="queued", storage_key="recordings/1/x"),
            {"copy_status": "copied"},
        ),
    }


@pytest.mark.django_db
class TestEveryKind:
    def test_every_kind_is_covered_here(self):
        assert {kind.name for kind in outbox.kinds()} == set(_due_and_done())

    @pytest.mark.parametrize("name", sorted(_due_and_done()))
    def test_an_overdue_row_is_sent_and_a_finished_one_leaves_the_outbox(self, name, monkeypatch):
        kind = outbox.kind_for(name)
        make, done = _due_and_done()[name]
        due, finished = make(), make()
        sent = []
        monkeypatch.setattr(kind.task, "apply_async", lambda args=None, **kw: sent.append(args))
        make_overdue(due)
        make_overdue(finished)
        type(finished).objects.filter(pk=finished.pk).update(**done)
        result = outbox.outbox_sweep()
        assert sent == [(due.pk,)] and result["sent"] == {name: 1}
        assert next_attempt(finished) is None and next_attempt(due) > timezone.now()


@pytest.mark.django_db(transaction=True)  # the keeper renews from a thread with its own connection
class TestLeases:
    def test_a_live_run_keeps_renewing_its_lease_and_stops_when_it_ends(self, settings):
        settings.OUTBOX_LEASE_SECONDS = 0.6  # renewed every 0.2 s
        sms = SmsFactory(status="queued")
        kind = outbox.kind_for(SMS)
        outbox.lease(kind, sms.pk)
        first = next_attempt(sms)
        seen = {first}
        with outbox.LeaseKeeper(kind, sms.pk):
            deadline = timezone.now() + dt.timedelta(seconds=30)
            while len(seen) < 3 and timezone.now() < deadline:
                seen.add(next_attempt(sms))
                threading.Event().wait(0.05)
        assert len(seen) >= 3, "the lease was not renewed while the run lived"
        assert max(seen) > first
        ended = next_attempt(sms)
        threading.Event().wait(0.5)  # more than two renewal periods
        assert next_attempt(sms) == ended  # the thread stopped with the run

    def test_a_batch_run_renews_the_rows_it_has_yet_to_finish_and_no_other(self, settings):
        settings.OUTBOX_LEASE_SECONDS = 0.6  # renewed every 0.2 s
        waiting, finished = SmsFactory(status="queued"), SmsFactory(status="queued")
        kind = _kind(SMS)
        outbox.lease_many(kind, [waiting.pk, finished.pk])
        keeper = outbox.BatchLeaseKeeper(kind, [waiting.pk, finished.pk])
        keeper.done(finished.pk)
        outbox.due_in(kind, finished.pk, 60)  # its outcome: a retry a minute from now
        retry_at, first = next_attempt(finished), next_attempt(waiting)
        with keeper:
            deadline = timezone.now() + dt.timedelta(seconds=30)
            while next_attempt(waiting) == first and timezone.now() < deadline:
                threading.Event().wait(0.05)
            threading.Event().wait(0.5)  # more renewals
        assert next_attempt(waiting) > first, "the waiting row's lease was not renewed"
        assert next_attempt(finished) == retry_at  # never overwritten by a renewal

    def test_a_killed_runs_row_is_due_again_within_one_lease_and_a_sweep(self, settings):
        """Issue 17 point 5: a killed worker delays its work by at most a minute."""
        assert settings.OUTBOX_LEASE_SECONDS + settings.OUTBOX_SWEEP_INTERVAL_SECONDS <= 60
        sms = SmsFactory(status="queued")
        started = timezone.now()
        outbox.lease(outbox.kind_for(SMS), sms.pk)  # the run started, then its worker died: no renewal
        assert next_attempt(sms) <= started + dt.timedelta(seconds=settings.OUTBOX_LEASE_SECONDS + 1)
        later = started + dt.timedelta(seconds=settings.OUTBOX_LEASE_SECONDS + 1)
        assert outbox.outbox_sweep(now=later)["sent"] == {SMS: 1}
