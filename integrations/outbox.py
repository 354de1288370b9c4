"""The outbox: a row that needs a task carries its own `next_attempt_at`, and one sweeper sends what is overdue.

A Celery message can go missing three ways: the broker refuses it after the
row committed, a worker dies mid-run (Redis hands the message back only after
its visibility timeout), or the message is lost in Redis. The row, not the
message, is the record of the work, as it is for webhook events:

- `task_base.enqueue_on_commit` sets `next_attempt_at = now + OUTBOX_GRACE_SECONDS`
  in the caller's transaction, so the row and its promise commit together,
  and sends after commit. A broker error there is logged and makes the row due
  at once: the client still gets its 202, the next sweep sends the task.
- A run leases its row: `next_attempt_at = now + OUTBOX_LEASE_SECONDS`,
  renewed every third of that by a thread of the run's own (LeaseKeeper) for
  as long as the run lives, however long the task may take. A worker that
  dies mid-run stops renewing: the lease runs out, then the sweeper sends the
  task again (within the lease plus one sweep interval). A run that retries or is deferred moves the
  row to when that retry is due, so the sweeper never races its own retries.
- A run that ends clears `next_attempt_at` unless the row is still due for one
  of its model's kinds. Giving up (the task's last attempt failed) clears it
  too: the row now waits for staff or reconciliation, and is never re-sent
  behind their back, unless the kind was registered `resweep_after_give_up`
  (work that is always safe to repeat, such as removing stored objects).
- The sweeper (beat, every OUTBOX_SWEEP_INTERVAL_SECONDS) claims due rows
  whose `next_attempt_at` has passed, per kind, with SELECT ... FOR UPDATE SKIP
  LOCKED, moves `next_attempt_at` forward with backoff and counts the sweep,
  commits, and only then sends: two sweepers never send the same row, and a
  sweeper that dies between commit and send costs one backoff, not the work.

Tasks stay idempotent (create_once for Twilio, Idempotency-Keys for Stripe,
state checks for the rest): a sweep may re-send a row whose message was only
slow, never lost, and the second run finds nothing left to do.

    outbox.register(SmsMessage, sms_send, due_states=("queued", "sending"), where=Q(external_id__isnull=True))

A kind is the pair (model, task); its name is the task's name. A model may
have several kinds (a payment's fee record and its cancellation) as long as
their `due` conditions do not overlap: they share one `next_attempt_at`.
"""

import datetime as dt
import functools
import logging
import operator
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from .compiled_sql import compiled_update

logger = logging.getLogger(__name__)


class OutboxMixin(models.Model):
    """The fields every row that needs a task carries (see integrations.outbox)."""

    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="When the outbox sweeper sends this row's task (again) if nothing has finished it by then.",
    )
    outbox_sweeps = models.PositiveIntegerField(
        default=0, help_text="How many times the sweeper found this row overdue and sent its task again."
    )

    class Meta:
        abstract = True


@dataclass(frozen=True)
class Kind:
    model: type
    task: object  # a Celery task taking the row's pk as its one argument
    due: Q  # the rows that still need the task
    resweep_after_give_up: bool = False

    @property
    def name(self):
        return self.task.name

    @property
    def label(self):
        return self.model._meta.label_lower

    def lease_seconds(self):
        """How long a run's row stays its own without a renewal (LeaseKeeper renews it while the run lives)."""
        return float(settings.OUTBOX_LEASE_SECONDS)


_KINDS = {}  # task name -> Kind
_discovered = False


def register(model, task, *, due_states=None, where=None, resweep_after_give_up=False):
    """Declare that rows of `model` in `due_states` (and matching `where`) need `task(pk)` until they leave them."""
    if not any(f.name == "next_attempt_at" for f in model._meta.get_fields()):
        raise TypeError(f"{model.__name__} needs integrations.outbox.OutboxMixin to be registered in the outbox")
    due = Q()
    if due_states is not None:
        from .states import state_field

        due &= Q(**{f"{state_field(model)}__in": [str(s) for s in due_states]})
    if where is not None:
        due &= where
    kind = Kind(model=model, task=task, due=due, resweep_after_give_up=resweep_after_give_up)
    _KINDS[task.name] = kind
    _statements.clear()  # finished() of this model must now see this kind's due rows too
    return kind


def _discover():
    # Kinds are registered in each app's tasks.py; a web process imports those only when it first enqueues.
    global _discovered
    if not _discovered:
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("tasks")
        _discovered = True


def kinds():
    _discover()
    return list(_KINDS.values())


def kind_for(task):
    return _KINDS.get(getattr(task, "name", task))


def _due_for_any(model):
    """Due for any kind of `model` (the row must keep its next_attempt_at)."""
    conditions = [kind.due for kind in _KINDS.values() if kind.model is model]
    return functools.reduce(operator.or_, conditions)


def _at(seconds, now=None):
    return (now or timezone.now()) + dt.timedelta(seconds=max(0.0, float(seconds)))


# --- the task path's UPDATEs, compiled once ---------------------------------------------------

# (statement, model or kind, database) -> (sql, params with Params in the open places); cleared by register().
_statements = {}


def _update(key, model, build, **values):
    """`queryset.update(**changes)` for `build(pk=..., at=...)`, the ORM's SQL compiled once per process.

    Every task run of an outbox kind writes its row twice (lease, finished) and
    every enqueue once, and building those statements cost the ORM more CPU
    than running them (`finished`'s exclusion of every kind's due rows is a
    subquery with a join: ~1 ms of a fee look-up's ~7, issue 11).
    """
    fields = {"pk": model._meta.pk, "at": model._meta.get_field("next_attempt_at")}
    return compiled_update(_statements, key, model, build, fields, **values)


def _due_row(kind):
    """The row `pk` while it still needs `kind`'s task: next_attempt_at = `at`."""
    return lambda pk, at: (kind.model.objects.filter(pk=pk).filter(kind.due), {"next_attempt_at": at})


# --- what the task path calls -------------------------------------------------------------


def mark_enqueued(kind, pk):
    """In the enqueuing transaction: the sweeper sends it unless a run has started within the grace."""
    _update(
        ("enqueued", kind.model),
        kind.model,
        lambda pk, at: (kind.model.objects.filter(pk=pk), {"next_attempt_at": at, "outbox_sweeps": 0}),
        pk=pk,
        at=_at(settings.OUTBOX_GRACE_SECONDS),
    )


def enqueued_fields():
    """What mark_enqueued writes, for a caller that UPDATEs the row in the enqueuing transaction anyway: written
    with that UPDATE (then task_base.enqueue_marked_on_commit), the row costs one UPDATE, not two."""
    return {"next_attempt_at": _at(settings.OUTBOX_GRACE_SECONDS), "outbox_sweeps": 0}


def mark_send_failed(kind, pk):
    """The broker refused the message after commit: due now, so the next sweep sends it."""
    try:
        kind.model.objects.filter(pk=pk).filter(kind.due).update(next_attempt_at=timezone.now())
    except Exception:  # noqa: BLE001 - the grace set at enqueue still brings the sweeper; log and go on
        logger.exception("outbox: could not mark %s %s due after a broker error", kind.label, pk)


def lease(kind, pk):
    """A run starts: if it dies, the sweeper sends the task again once the run could no longer be alive."""
    _update(("due", kind.name), kind.model, _due_row(kind), pk=pk, at=_at(kind.lease_seconds()))


def lease_many(kind, pks):
    """lease() for several rows at once: those a batch run has yet to run (task_base.ProviderTask.run_each)."""
    kind.model.objects.filter(pk__in=pks).filter(kind.due).update(next_attempt_at=_at(kind.lease_seconds()))


class LeaseKeeper:
    """Renews a running task's lease every third of OUTBOX_LEASE_SECONDS, from a thread of its own.

    A live run keeps its row however long it takes (a big scan); a killed
    worker's thread dies with it, so its row is due again within one lease.
    Leaving the block stops and joins the thread before the run's own outcome
    (finished, retry due_in) is written, so a late renewal never overwrites it.
    """

    def __init__(self, kind, pk):
        self.kind, self.pk = kind, pk
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"outbox-lease:{kind.name}:{pk}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        return False

    def _renew(self):
        from django.db import connections

        try:
            while not self._stop.wait(self.kind.lease_seconds() / 3):
                try:
                    with self._lock:
                        self._lease()
                except Exception:  # noqa: BLE001 - the next renewal tries again; the run goes on
                    logger.exception("outbox: could not renew the lease of %s %s", self.kind.label, self.pk)
        finally:
            connections.close_all()  # this thread's own connections

    def _lease(self):
        lease(self.kind, self.pk)


class BatchLeaseKeeper(LeaseKeeper):
    """LeaseKeeper for the rows a batch run has yet to finish: a row leaves it (`done`) before its outcome is
    written, so a late renewal never overwrites that either. Usable without its thread (an eager run)."""

    def __init__(self, kind, pks):
        super().__init__(kind, f"{len(pks)} rows")
        self.pending = set(pks)

    def done(self, pk):
        with self._lock:
            self.pending.discard(pk)

    def _lease(self):
        if self.pending:
            lease_many(self.kind, sorted(self.pending))


def due_in(kind, pk, seconds):
    """A run retries or is deferred by `seconds`: the sweeper waits for that retry (plus the grace) first."""
    at = _at(seconds + settings.OUTBOX_GRACE_SECONDS)
    _update(("due", kind.name), kind.model, _due_row(kind), pk=pk, at=at)


def finished(kind, pk):
    """A run ended: the row leaves the outbox unless it is still due for one of its kinds."""
    model = kind.model
    _update(
        ("finished", model),
        model,
        lambda pk: (
            model.objects.filter(pk=pk, next_attempt_at__isnull=False).exclude(_due_for_any(model)),
            {"next_attempt_at": None, "outbox_sweeps": 0},
        ),
        pk=pk,
    )


def finished_many(kind, pks):
    """finished() for the rows a batch run finished (ProviderTask.run_each): one UPDATE for all of them."""
    if pks:
        model = kind.model
        model.objects.filter(pk__in=pks, next_attempt_at__isnull=False).exclude(_due_for_any(model)).update(
            next_attempt_at=None, outbox_sweeps=0
        )


def gave_up(kind, pk):
    """The task's last attempt failed: out of the outbox (staff or reconciliation take over), or back later."""
    rows = kind.model.objects.filter(pk=pk)
    if kind.resweep_after_give_up:
        rows.filter(kind.due).update(next_attempt_at=_at(settings.OUTBOX_BACKOFF_MAX_SECONDS))
    else:
        rows.update(next_attempt_at=None)


# --- the sweeper ----------------------------------------------------------------------------


def backoff_seconds(sweeps):
    """After the n-th sweep of a row: grace * 2**n, capped at OUTBOX_BACKOFF_MAX_SECONDS."""
    return min(settings.OUTBOX_BACKOFF_MAX_SECONDS, settings.OUTBOX_GRACE_SECONDS * 2 ** min(sweeps, 20))


def _claim(kind, now, limit):
    """Lock up to `limit` overdue due rows, move each one's next attempt on and count the sweep: [pk]."""
    with transaction.atomic():
        locked = kind.model.objects.filter(kind.due, next_attempt_at__lte=now).order_by("next_attempt_at", "pk")
        if connection.features.has_select_for_update_of:
            locked = locked.select_for_update(skip_locked=True, of=("self",))
        else:
            locked = locked.select_for_update(skip_locked=True)
        rows = list(locked.only("pk", "outbox_sweeps")[:limit])
        by_sweeps = defaultdict(list)
        for row in rows:
            by_sweeps[row.outbox_sweeps].append(row.pk)
        for sweeps, pks in by_sweeps.items():
            kind.model.objects.filter(pk__in=pks).update(
                next_attempt_at=_at(backoff_seconds(sweeps), now), outbox_sweeps=sweeps + 1
            )
    return [row.pk for row in rows]


def _send(kind, pks, now):
    """Send the claimed rows' tasks; on a broker error, the rest stay due for the next sweep. Rows sent.

    At the broker's default priority, whatever the task's own: a background task (BACKGROUND_PRIORITY, a fee
    look-up) yields to other work only until it is overdue. Under a load that never lets up, its first message
    could wait in the queue for as long as the load lasts; the sweep's copy runs beside the rest (the row's
    lease makes the two runs one), so such bookkeeping waits at most about a grace and a sweep interval."""
    for i, pk in enumerate(pks):
        try:
            kind.task.apply_async((pk,), priority=0)
        except BrokerError:
            logger.exception(
                "outbox: the broker refused %s; %d row(s) left for the next sweep", kind.name, len(pks) - i
            )
            kind.model.objects.filter(pk__in=pks[i:]).update(next_attempt_at=now)
            return i
    return len(pks)


def _clear_finished(now):
    """Rows that left their due states without a run clearing them (a webhook finished them): out of the outbox."""
    cleared = 0
    for model in {kind.model for kind in _KINDS.values()}:
        pks = list(
            model.objects.filter(next_attempt_at__lte=now)
            .exclude(_due_for_any(model))
            .values_list("pk", flat=True)[: settings.OUTBOX_BATCH_SIZE]
        )
        if pks:
            cleared += model.objects.filter(pk__in=pks).update(next_attempt_at=None, outbox_sweeps=0)
    return cleared


def _alert_stuck():
    """One open alert per kind while rows of it stay overdue after OUTBOX_ALERT_AFTER_SWEEPS sweeps."""
    from .alerts import alert_raise
    from .models import Alert

    threshold = settings.OUTBOX_ALERT_AFTER_SWEEPS
    stuck = {}
    for kind in _KINDS.values():
        rows = kind.model.objects.filter(kind.due, next_attempt_at__isnull=False, outbox_sweeps__gte=threshold)
        count = rows.count()
        if count:
            stuck[kind.name] = count
            alert_raise(
                kind=Alert.Kind.TASK_FAILED,
                provider=getattr(kind.task, "provider", None) or "",
                message=(
                    f"{count} {kind.model._meta.verbose_name_plural} still need {kind.name} after {threshold} or more "
                    "outbox sweeps: their task is sent but never finishes (is a worker consuming its queue?)."
                ),
                dedupe_key=f"outbox_stuck:{kind.name}",
            )
    return stuck


def outbox_sweep(*, now=None):
    """Send the task of every overdue row, in batches per kind, within OUTBOX_SWEEP_MAX_SECONDS.

    Returns {"sent": {kind: n}, "cleared": n, "stuck": {kind: n}}.
    """
    _discover()
    now = now or timezone.now()
    deadline = time.monotonic() + settings.OUTBOX_SWEEP_MAX_SECONDS
    batch = settings.OUTBOX_BATCH_SIZE
    sent = {}
    for kind in list(_KINDS.values()):
        while True:
            pks = _claim(kind, now, batch)
            if not pks:
                break
            done = _send(kind, pks, now)
            sent[kind.name] = sent.get(kind.name, 0) + done
            logger.warning("outbox: sent %d overdue %s task(s) again", done, kind.name)
            if done < len(pks) or len(pks) < batch or time.monotonic() > deadline:
                break
    return {"sent": sent, "cleared": _clear_finished(now), "stuck": _alert_stuck()}


# --- what staff see -----------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxCount:
    name: str  # the task
    label: str  # the model, "messaging.smsmessage"
    waiting: int  # due, with a next attempt still ahead (queued, running or retrying)
    overdue: int  # due, and its next attempt has passed: the next sweep sends it
    stuck: int  # swept OUTBOX_ALERT_AFTER_SWEEPS times or more


def outbox_counts(*, now=None):
    """Per kind: rows waiting, overdue and stuck (for the console and admin), in one statement (UNION ALL of one
    grouped count per kind): the console's overview asks on every view, and a round trip per kind was most of it."""
    now = now or timezone.now()
    every = kinds()
    per_kind = [
        kind.model.objects.filter(kind.due, next_attempt_at__isnull=False)
        .order_by()
        .annotate(kind_no=models.Value(number, output_field=models.IntegerField()))
        .values("kind_no")
        .annotate(
            waiting=models.Count("pk", filter=Q(next_attempt_at__gt=now)),
            overdue=models.Count("pk", filter=Q(next_attempt_at__lte=now)),
            stuck=models.Count("pk", filter=Q(outbox_sweeps__gte=settings.OUTBOX_ALERT_AFTER_SWEEPS)),
        )
        .values_list("kind_no", "waiting", "overdue", "stuck")
        for number, kind in enumerate(every)
    ]
    found = {}
    if per_kind:
        found = {row[0]: row[1:] for row in per_kind[0].union(*per_kind[1:], all=True)}
    return [OutboxCount(kind.name, kind.label, *found.get(number, (0, 0, 0))) for number, kind in enumerate(every)]
