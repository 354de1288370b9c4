"""Processing stored events in batches: claimed under SKIP LOCKED, each handler in its own savepoint, never lost.

A drain (one per provider at a time, see dispatch.py) claims up to
WEBHOOK_DRAIN_BATCH_SIZE due events in the provider's event-time order with
SELECT ... FOR UPDATE SKIP LOCKED, so concurrent drainers split a backlog
instead of queueing behind each other's locks. Each event's handler runs in
its own savepoint inside the batch's one transaction: a handler that raises
rolls back its own writes only, its event is marked failed (with backoff) and
the batch goes on. (A provider whose handlers rarely raise declares it,
registry.webhook_handlers_rarely_raise: its batch's handlers share one
savepoint, and if one of them raises that run is rolled back and the batch
runs again with a savepoint per handler, to the same outcome.) The batch
commits once, so a worker that dies mid-batch rolls every event of it back to
where it was, handler writes included: the event is neither lost nor applied
twice (handlers' effects outside the database go through on_commit, like
every task's).

Follow-up work is never lost after the commit either. A task a handler
queues whose row is in the outbox is re-sent by the outbox's sweeper; any
other (a Meet event to apply, a mailbox to sync, a payment-failed notice) has
no row of its own, so the batch records it on its event (`follow_ups`, due
after OUTBOX_GRACE_SECONDS) in the same commit and clears it once the broker
has taken it (task_base.Receipt). A worker that dies between the commit and
the publish, or a broker that refuses it, leaves it there for the beat
(webhook_follow_ups_send), so a processed event's work is delayed, never
lost. Follow-ups of a handler that failed, or of a savepoint it rolled back,
are discarded with its writes, as on_commit discards their messages.

What a batch can do once, it does once (issue 11, CPU per event): the
provider's batch preparer (registry.webhook_batch_preparer) reads the rows
its handlers need in one query before the first one runs, the events' new
states are written with one UPDATE per outcome, and the tasks the handlers
queue are published together after the commit (task_base.sends_batched).

Per-object ordering: events carry the provider object they are about
(`object_key`, from the provider's @webhook_ordering_key). An event waits
while an earlier event (by the provider's event time) of the same object is
still unprocessed, being processed by another drainer, or failed with retries
left; an event that failed for good, or was ignored, no longer holds the
object back. Events without a key are never held.

One object, one drainer (PostgreSQL): a batch takes a transaction-scoped
advisory lock per object it holds events of, without waiting, and leaves the
events of objects another drainer's batch holds to a later drain. Without it
a late event (an older failure delivered after the success, in a later batch)
was handled beside its object's newer event in another drainer: both batches
wrote the same rows in opposite orders and PostgreSQL broke the deadlock by
failing one event (bench_payments). A drain that left events for another
drainer looks again shortly (DrainResult.retry_in), so none waits for the
sweeper.
"""

import inspect
import logging
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from psycopg import pq

from ..compiled_sql import compiled_select
from ..metrics import webhook_events
from ..models import Alert, WebhookEvent
from ..redaction import redact
from ..states import IllegalTransition, allowed, transition
from ..task_base import sends_batched, unkept_sends
from . import dispatch
from .registry import batch_finishers, batch_preparer_for, handler_for, handlers_rarely_raise

logger = logging.getLogger(__name__)

Status = WebhookEvent.Status


class WebhookIgnored(Exception):
    """Raised by a handler for an event it deliberately skips (e.g. older than what we already hold)."""


class WebhookPermanentError(Exception):
    """Raised by a handler when retrying cannot help (the event references something that cannot exist)."""


class WebhookReplayRefused(ValueError):
    """A replay that cannot work: retention (webhook_payloads) removed the payload its handler would read."""


@dataclass(frozen=True)
class ProcessResult:
    # processed, failed, ignored; skipped (locked elsewhere, already done, gone); waiting (an earlier
    # event of its object is not done yet); deferred (the batch ran out of time before reaching it)
    status: str
    retry_in: float | None = None  # seconds until the next attempt, for a failure that will be retried


@dataclass(frozen=True)
class DrainResult:
    claimed: int
    counts: dict = field(default_factory=dict)  # ProcessResult.status -> events
    more: bool = False  # events are ready right now: drain again at once
    # Seconds until the provider should be drained again: the earliest retry of an event that failed in this
    # batch, or a short look again (WEBHOOK_HELD_RECHECK_SECONDS) when events were left for another drainer.
    retry_in: float | None = None


def _processable():
    # A failed event with no next attempt has used its retries (or failed
    # permanently); only a replay brings it back.
    return Q(status=Status.RECEIVED) | Q(status=Status.FAILED, next_attempt_at__isnull=False)


def _unfinished():
    # What holds later events of the same object back. PROCESSING is never
    # committed (it is set inside the batch's transaction), listed for safety.
    return Q(status__in=[Status.RECEIVED, Status.PROCESSING]) | Q(status=Status.FAILED, next_attempt_at__isnull=False)


def _event_time():
    # The provider's event time orders events; arrival time stands in where a provider gives none.
    return Coalesce("occurred_at", "received_at")


def ready_events(*, now, provider=None):
    """Events a drain may take now: received, or failed with the retry due; not held by a retrying earlier event.

    Held in SQL: an earlier event of the same object waiting for its retry
    (the long wait). Held after claiming (see _process): an earlier event of
    the object that another drainer holds right now, or that failed in this
    batch.
    """
    retrying_earlier = (
        WebhookEvent.objects.filter(
            provider=OuterRef("provider"),
            object_key=OuterRef("object_key"),
            status=Status.FAILED,
            next_attempt_at__gt=now,
        )
        .exclude(object_key="")
        .annotate(t=_event_time())
        .filter(Q(t__lt=OuterRef("t")) | Q(t=OuterRef("t"), pk__lt=OuterRef("pk")))
    )
    events = WebhookEvent.objects.all() if provider is None else WebhookEvent.objects.filter(provider=provider)
    return (
        events.filter(Q(status=Status.RECEIVED) | Q(status=Status.FAILED, next_attempt_at__lte=now))
        .annotate(t=_event_time())
        .filter(Q(object_key="") | ~Exists(retrying_earlier))
    )


# (batch size, database) -> the drain's claim, compiled once (integrations.compiled_sql).
_claims = {}


def _claim(*, provider, now, limit):
    """The drain's batch: up to `limit` of `provider`'s ready events in event-time order, locked (SKIP LOCKED).

    Its SQL is the ORM's, built once per process: building and compiling ready_events' subquery, annotation
    and lock cost ~2 ms of CPU per batch, as much as the handlers of ten events (issue 11: a drain asked for
    as events arrive takes batches of tens of events, so each batch's fixed cost counts).
    """

    def build(_provider, _now):
        return (
            ready_events(now=_now, provider=_provider).select_for_update(skip_locked=True).order_by("t", "pk")[:limit]
        )

    fields = {
        "_provider": WebhookEvent._meta.get_field("provider"),
        "_now": WebhookEvent._meta.get_field("next_attempt_at"),
    }
    return compiled_select(_claims, limit, WebhookEvent, build, fields, _provider=provider, _now=now)


def retry_delay(attempts):
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempts-1)))."""
    ceiling = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    return random.uniform(0, ceiling)


def _error_text(exc):
    # Staff read it in admin and its alert quotes it: a handler's error may quote a key or a bearer token.
    return redact(f"{type(exc).__name__}: {exc}")


def _held_from_outside(batch):
    """{object_key: (time, pk) of the earliest unfinished event of that object that is not in this batch}."""
    keys = {e.object_key for e in batch if e.object_key}
    if not keys:
        return {}
    rows = (
        WebhookEvent.objects.filter(_unfinished(), provider__in={e.provider for e in batch}, object_key__in=keys)
        .exclude(pk__in=[e.pk for e in batch])
        .annotate(t=_event_time())
        .values_list("provider", "object_key", "t", "pk")
    )
    first = {}
    for provider, key, t, pk in rows:
        if (provider, key) not in first or (t, pk) < first[(provider, key)]:
            first[(provider, key)] = (t, pk)
    return first


def _objects_taken_elsewhere(batch):
    """{(provider, object_key)} of this batch that another drainer's batch holds; the others are ours until commit.

    One statement: a transaction-scoped advisory lock per object, tried without waiting (so two drainers can
    never wait on each other here). Only PostgreSQL has them; elsewhere (SQLite, one process) nothing is taken.
    """
    keys = {(e.provider, e.object_key) for e in batch if e.object_key}
    if not keys or connection.vendor != "postgresql":
        return set()
    names = {f"webhook-object:{provider}:{key}": (provider, key) for provider, key in keys}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE NOT pg_try_advisory_xact_lock(hashtextextended(name, 0))",
            [sorted(names)],
        )
        return {names[name] for (name,) in cursor.fetchall()}


def _prepare(batch):
    """Run each provider's batch preparer (registry.webhook_batch_preparer) on its events of the batch.

    In a savepoint: a preparer that fails (a query on a payload it did not
    expect) is logged and rolled back, and the batch is handled without it,
    so it can never hold the batch back. Whatever it left on the events is a
    shortcut the handlers may take, never a state of their own.
    """
    by_provider = defaultdict(list)
    for event in batch:
        by_provider[event.provider].append(event)
    for provider, events in by_provider.items():
        prepare = batch_preparer_for(provider)
        if prepare is None:
            continue
        try:
            with transaction.atomic():
                prepare(events)
        except Exception:
            logger.warning(
                "webhook batch preparer failed; handling the batch without it",
                exc_info=True,
                extra={"provider": provider},
            )


class FollowUps:
    """The follow-ups of one batch's events (see the module docstring): each event's leave its record once the
    broker has taken all of them (task_base.Receipt calls `published`)."""

    def __init__(self):
        self.waiting = {}  # event pk -> its messages the broker has not taken yet
        self.due_at = None  # what the batch wrote on its events' follow_ups_due_at

    def keep(self, event, sends):
        """Record what the handler of `event` queued (on_commit messages that survived its savepoint)."""
        event.follow_ups = [[task.name, list(args), kwargs] for task, args, kwargs, _receipt in sends]
        self.waiting[event.pk] = len(sends)
        for *_, receipt in sends:
            receipt.listener, receipt.key = self, event.pk

    def save(self, events, now):
        """With the batch: the events' follow-ups, due for the sweeper unless their publish clears them first."""
        kept = [e for e in events if e.pk in self.waiting and e.status == Status.PROCESSED]
        if not kept:
            return
        self.due_at = now + timedelta(seconds=settings.OUTBOX_GRACE_SECONDS)
        for event in kept:
            event.follow_ups_due_at = self.due_at
        if connection.vendor != "postgresql":
            WebhookEvent.objects.bulk_update(kept, ["follow_ups", "follow_ups_due_at"])
            return
        # One UPDATE from arrays, not bulk_update's CASE of one WHEN per event: building that cost the ORM
        # ~0.1 ms of CPU per event of the batch (issue 11).
        column = WebhookEvent._meta.get_field("follow_ups")
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {connection.ops.quote_name(WebhookEvent._meta.db_table)} AS e "
                "SET follow_ups = f.follow_ups, follow_ups_due_at = %s "
                "FROM unnest(%s::bigint[], %s::jsonb[]) AS f(id, follow_ups) WHERE e.id = f.id",
                [
                    self.due_at,
                    [e.pk for e in kept],
                    [column.get_db_prep_save(e.follow_ups, connection) for e in kept],
                ],
            )

    def published(self, pks):
        done = []
        for pk in pks:
            self.waiting[pk] -= 1
            if self.waiting[pk] == 0:
                done.append(pk)
        if done and self.due_at is not None:
            WebhookEvent.objects.filter(pk__in=done, follow_ups_due_at=self.due_at).update(
                follow_ups=[], follow_ups_due_at=None
            )


class _RunGuarded(Exception):
    """A handler raised in a batch run without a savepoint per handler: the batch runs again with them."""


def _call(handler, event, guarded):
    if guarded:
        with transaction.atomic():
            handler(event)
        return
    try:
        handler(event)  # the batch's one savepoint (_handle_together) takes its writes back if it raises
    except Exception as exc:
        raise _RunGuarded(f"{type(exc).__name__} from the handler of {event.provider} {event.type}") from exc
    if _needs_rollback():
        # It swallowed a database error: only a savepoint of its own may take back its writes alone, as the
        # batch's would silently take back every handler's.
        raise _RunGuarded(f"the handler of {event.provider} {event.type} swallowed a database error")


def _needs_rollback():
    """Whether the transaction can no longer go on: Django's flag, or PostgreSQL's aborted state."""
    if connection.needs_rollback:
        return True
    info = getattr(connection.connection, "info", None)  # psycopg 3
    return info is not None and info.transaction_status == pq.TransactionStatus.INERROR


def _run_handler(event, now, follow_ups, *, guarded=True):
    """Run one event's handler in a savepoint; set its new state on `event`. Returns (ProcessResult, final failure).

    The messages its handler queued that no outbox row keeps go to `follow_ups`. Not `guarded`, the
    handler runs without a savepoint of its own and anything it raises ends the run (_RunGuarded).
    """
    handler = handler_for(event.provider, event.type)
    if handler is None:
        event.status = Status.IGNORED
        event.last_error = f"No handler is registered for {event.provider} {event.type!r}."
        event.next_attempt_at = None
        event.processed_at = now
        return ProcessResult("ignored"), False

    event.status = Status.PROCESSING  # only visible inside this transaction, to the handler
    event.attempts += 1
    # What the handler leaves in on_commit: a savepoint rollback only removes callbacks added after this point.
    queued_before = len(connection.run_on_commit)
    try:
        _call(handler, event, guarded)
    except _RunGuarded:
        raise
    except WebhookIgnored as exc:
        event.status = Status.IGNORED
        event.last_error = redact(str(exc))
        event.processed_at = now
        event.next_attempt_at = None
        return ProcessResult("ignored"), False
    except Exception as exc:
        event.status = Status.FAILED
        event.last_error = _error_text(exc)
        logger.warning(
            "webhook handler failed",
            exc_info=True,
            extra={"provider": event.provider, "event_id": event.event_id, "attempts": event.attempts},
        )
        if isinstance(exc, WebhookPermanentError) or event.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            event.next_attempt_at = None
            return ProcessResult("failed"), True
        retry_in = retry_delay(event.attempts)
        event.next_attempt_at = now + timedelta(seconds=retry_in)
        return ProcessResult("failed", retry_in), False
    sends = unkept_sends(connection.run_on_commit[queued_before:])
    if sends:
        follow_ups.keep(event, sends)
    event.recovered = bool(event.last_error)  # it had failed before: a retry or a replay worked
    event.status = Status.PROCESSED
    event.processed_at = now
    event.next_attempt_at = None
    event.last_error = ""
    return ProcessResult("processed"), False


def _finish(events):
    """The registered finishers (registry.webhook_batch_finisher) on the events done with their payload."""
    if not events:
        return
    for finish in batch_finishers():
        try:
            with transaction.atomic():
                finish(events)
        except Exception:  # noqa: BLE001 - the batch's outcomes are written; a finisher must not undo them
            logger.exception("webhook batch finisher %s failed", getattr(finish, "__qualname__", finish))


def _save(events):
    """Write the batch's new states: one UPDATE per distinct outcome (all successes share one), not one per event.

    The batch's rows are locked (SKIP LOCKED), so no conditional UPDATE per row is needed, but each move is still
    one WebhookEvent.TRANSITIONS allows (integrations.states): the table governs the drain like every writer."""
    groups = defaultdict(list)
    for event in events:
        frm, to = event.claimed_status, event.status
        # A handler runs the event through PROCESSING (visible only inside the batch); an event without one
        # moves straight to IGNORED.
        through_processing = allowed(WebhookEvent, frm, Status.PROCESSING) and allowed(
            WebhookEvent, Status.PROCESSING, to
        )
        if not (allowed(WebhookEvent, frm, to) or through_processing):
            raise IllegalTransition(WebhookEvent, frm, to)
        values = (event.status, event.last_error, event.processed_at, event.next_attempt_at, event.attempts)
        groups[values].append(event.pk)
    for (status, last_error, processed_at, next_attempt_at, attempts), pks in groups.items():
        WebhookEvent.objects.filter(pk__in=pks).update(
            status=status, last_error=last_error, processed_at=processed_at, next_attempt_at=next_attempt_at,
            attempts=attempts,
        )  # fmt: skip


def _process(batch, *, deadline=None):
    """Handle claimed events in order inside the caller's transaction: [ProcessResult per event], final failures.

    An event is held ("waiting", left untouched) when another drainer's batch
    holds its object, when an earlier event of its object is unfinished
    outside this batch (another drainer holds it), or when one failed or was
    held earlier in this batch. Past the deadline the rest of the batch is
    left untouched ("deferred") for the next drain, so one slow handler delays
    at most the events after it in this batch. The last value says whether
    events were left for another drainer (the drain looks again shortly).
    """
    now = timezone.now()
    outside = _held_from_outside(batch)
    taken = _objects_taken_elsewhere(batch)
    _prepare(batch)
    run, reached = None, -1
    if all(handlers_rarely_raise(provider) for provider in {e.provider for e in batch}):
        run, reached = _handle_together(batch, now, deadline, outside, taken)
    if run is None:
        follow_ups, elsewhere = FollowUps(), set(taken)
        # The events the run in one savepoint reached within the deadline are handled again whatever the
        # clock says now: else a run that raised near the deadline would leave them all to the next drain,
        # which would do the same.
        run = _handle(batch, now, deadline, outside, elsewhere, follow_ups, guarded=True, reached=reached)
        run = (*run, follow_ups, elsewhere)
    results, touched, final_failures, held, follow_ups, elsewhere = run
    if touched:
        finished_at = timezone.now()
        for event in touched:
            if event.status == Status.PROCESSED:
                event.processed_at = finished_at  # what commits with the batch; handlers' writes commit then too
        _save(touched)
        follow_ups.save(touched, finished_at)
        _finish([e for e in touched if e.status != Status.FAILED or e.next_attempt_at is None])
    recovered = {(e.provider, e.type) for e in touched if e.status == Status.PROCESSED and getattr(e, "recovered", 0)}
    return results, final_failures, recovered, bool(elsewhere & held)


# What a run of the handlers sets on each event, put back when a run in one savepoint is taken back.
_RUN_FIELDS = ("status", "attempts", "last_error", "processed_at", "next_attempt_at", "follow_ups")


def _handle_together(batch, now, deadline, outside, taken):
    """_handle without a savepoint per handler, for providers whose handlers rarely raise
    (registry.webhook_handlers_rarely_raise): the whole run in one savepoint.

    Two statements per event (SAVEPOINT, RELEASE) and their Python were a third of the drain's statements
    (issue 11). If any handler raises, the run is rolled back to its savepoint, with the messages its
    handlers queued, the events are put back as they were claimed, and this returns None: the caller runs
    the batch again with a savepoint per handler, so the outcome is the one that run alone would have had.
    Returns (the run, -1), or (None, the position in the batch the run had reached).
    """
    saved = [(event, {name: getattr(event, name) for name in _RUN_FIELDS}) for event in batch]
    follow_ups, elsewhere, progress = FollowUps(), set(taken), []
    try:
        with transaction.atomic():
            run = _handle(batch, now, deadline, outside, elsewhere, follow_ups, guarded=False, progress=progress)
    except Exception as exc:  # noqa: BLE001 - _RunGuarded, or the savepoint's release itself (rolled back)
        logger.info("a webhook batch runs again with a savepoint per handler: %s", exc)
        for event, values in saved:
            event.__dict__.update(values)
            event.__dict__.pop("recovered", None)
        return None, len(progress) - 1
    return (*run, follow_ups, elsewhere), -1


def _handle(batch, now, deadline, outside, elsewhere, follow_ups, *, guarded, reached=-1, progress=None):
    """Run the handlers of the batch's events in order: (results, touched events, final failures, held objects).

    The deadline defers only the events after position `reached`; `progress` gets one item per event begun.
    """
    held = set()
    results, touched, final_failures = [], [], []
    for i, event in enumerate(batch):
        if progress is not None:
            progress.append(i)
        if deadline is not None and i > reached and time.monotonic() > deadline:
            results.append(ProcessResult("deferred"))
            continue
        key = (event.provider, event.object_key)
        if (
            event.object_key
            and key not in held
            and (key in elsewhere or (key in outside and outside[key] < (event.t, event.pk)))
        ):
            elsewhere.add(key)
            held.add(key)
        if event.object_key and key in held:
            results.append(ProcessResult("waiting"))
            continue
        event.claimed_status = event.status
        result, final = _run_handler(event, now, follow_ups, guarded=guarded)
        if event.object_key and result.status == "failed" and result.retry_in is not None:
            held.add(key)
        results.append(result)
        touched.append(event)
        if final:
            final_failures.append(event)
    return results, touched, final_failures, held


def _after_commit(provider_of, results, final_failures, recovered=()):
    counts = Counter(r.status for r in results)
    for status in ("processed", "failed", "ignored"):
        if counts[status]:
            webhook_events.labels(provider_of, status).inc(counts[status])
    if recovered:
        from ..alerts import webhook_alert_resolve_if_clear

        for provider, event_type in sorted(recovered):
            webhook_alert_resolve_if_clear(provider=provider, event_type=event_type)
    if final_failures:
        from ..alerts import alert_raise

        for event in final_failures:
            alert_raise(
                kind=Alert.Kind.WEBHOOK_FAILED,
                provider=event.provider,
                severity=Alert.Severity.CRITICAL,
                message=(
                    f"Webhook {event.provider} {event.type} {event.event_id} failed after {event.attempts} "
                    f"attempt(s): {event.last_error[:300]}. Fix the cause, then replay it in admin."
                ),
                dedupe_key=f"webhook_failed:{event.provider}:{event.type}",
            )
    return counts


def webhook_drain(*, provider, limit=None, on_full_batch=None):
    """Claim and process one batch of `provider`'s ready events; returns a DrainResult.

    `on_full_batch()` is called once the batch is claimed if it is full, while
    this batch is still being processed: the drain task uses it to queue the
    next drain at once, so another worker takes the next batch in parallel.
    """
    limit = limit or settings.WEBHOOK_DRAIN_BATCH_SIZE
    deadline = time.monotonic() + settings.WEBHOOK_DRAIN_MAX_SECONDS
    # The tasks the handlers queue (after the batch commits) go to the broker in one write, not one per event.
    with sends_batched(), transaction.atomic():
        batch = _claim(provider=provider, now=timezone.now(), limit=limit)
        if not batch:
            # Nothing, or all of it locked by other drainers, whose own follow-up covers what remains.
            return DrainResult(0)
        if len(batch) == limit and on_full_batch is not None:
            on_full_batch()
        results, final_failures, recovered, left_elsewhere = _process(batch, deadline=deadline)
    counts = _after_commit(provider, results, final_failures, recovered)
    retries = [r.retry_in for r in results if r.retry_in is not None]
    if left_elsewhere:
        # That drainer's own follow-up may look before our commit made them claimable: look again ourselves.
        retries.append(settings.WEBHOOK_HELD_RECHECK_SECONDS)
    # More is ready at once only when the claim may have left some: the batch was full, or ran out of time.
    # Whatever was ready and unlocked at the claim is in the batch, and an event committed since then asked
    # for a drain of its own (dispatch.py clears the flag before the claim), so no second ready_events query
    # (it cost each batch as much as its claim). A full batch of events held for another drainer's says
    # nothing is ready: draining again would spin on them until that drainer commits; it looks again after
    # its commit, and so do we, after retry_in.
    more = counts["deferred"] > 0 or (len(batch) == limit and counts["waiting"] < len(batch))
    return DrainResult(len(batch), dict(counts), more, min(retries) if retries else None)


def webhook_event_process(*, event_id):
    """Process one event now, whether its retry is due or not (a shell, a test, a message queued before drains).

    It is locked like a drain's batch (a second caller skips it, then finds it
    done) and held like one: it waits while an earlier event of its object is
    unfinished.
    """
    with transaction.atomic():
        event = (
            WebhookEvent.objects.select_for_update(skip_locked=True)
            .filter(_processable(), pk=event_id)
            .annotate(t=_event_time())
            .first()
        )
        if event is None:
            return ProcessResult("skipped")
        results, final_failures, recovered, _ = _process([event])
    _after_commit(event.provider, results, final_failures, recovered)
    return results[0]


def webhook_replay(*, event):
    """Process an event again from scratch (admin "Replay"): a fresh retry budget, drained after commit.

    An event whose payload retention removed, or an erasure redacted, is refused (WebhookReplayRefused): its
    handler could only fail, retry and, being its object's oldest event, hold back every newer event of that
    object meanwhile.
    """
    with transaction.atomic():
        scrubbed = Q(payload={}, headers={}, status__in=[Status.PROCESSED, Status.IGNORED])
        if WebhookEvent.objects.filter(scrubbed, pk=event.pk).exists():
            raise WebhookReplayRefused(
                f"Webhook {event.provider} {event.event_id} cannot be replayed: its payload was removed by the "
                "retention policy (RETENTION_WEBHOOK_PAYLOAD_DAYS)."
            )
        # A privacy erasure's redaction (privacy.erasure.webhooks_redact and webhooks_redact_late) leaves only
        # {"redacted": ...} and no headers, whatever the status: nothing a handler can apply either.
        if WebhookEvent.objects.filter(payload__has_key="redacted", headers={}, pk=event.pk).exists():
            raise WebhookReplayRefused(
                f"Webhook {event.provider} {event.event_id} cannot be replayed: its payload was redacted by a "
                "privacy erasure."
            )
        fresh = {"attempts": 0, "processed_at": None, "next_attempt_at": timezone.now()}
        if not transition(WebhookEvent, event.pk, Status.RECEIVED, **fresh):
            # Already received (never processed yet): a fresh budget all the same.
            WebhookEvent.objects.filter(pk=event.pk, status=Status.RECEIVED).update(**fresh)
        dispatch.request_drain_on_commit(event.provider)
    event.refresh_from_db()
    return event


def webhook_mark_ignored(*, event, reason="Marked ignored by staff."):
    with transaction.atomic():
        moved = transition(WebhookEvent, event.pk, Status.IGNORED, next_attempt_at=None, last_error=reason)
        if moved:
            # Later events of its object may have been waiting for it.
            dispatch.request_drain_on_commit(event.provider)
    event.refresh_from_db()
    return moved


def webhook_requeue_stale(*, limit=500):
    """Drain again every provider with events ready for longer than WEBHOOK_REQUEUE_AFTER_SECONDS.

    Covers a broker that was down when the event arrived, a worker that died
    mid-batch (its transaction rolled back, so the events are ready again) and
    a lost drain message. A drain is harmless when there is nothing to do, so
    this sends one per provider whatever the coalescing flag says (the flag
    may belong to the lost message). Returns how many events were overdue.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_REQUEUE_AFTER_SECONDS)
    overdue = Q(next_attempt_at__lt=cutoff) | Q(next_attempt_at__isnull=True, received_at__lt=cutoff)
    rows = list(ready_events(now=now).filter(overdue).order_by("received_at").values_list("pk", "provider")[:limit])
    if not rows:
        return 0
    # Stamp first, so the next beat tick does not count them again before a drain had its chance. Only rows
    # still ready and overdue: a row in a drain's batch is locked, this UPDATE waits for that batch's commit
    # and PostgreSQL then re-checks the WHERE on what it committed, so an event the drain just processed,
    # failed for good (next_attempt_at NULL) or scheduled for a retry keeps what the drain wrote.
    WebhookEvent.objects.filter(_processable(), overdue, pk__in=[pk for pk, _ in rows]).update(next_attempt_at=now)
    providers = sorted({provider for _, provider in rows})
    for provider in providers:
        dispatch.request_drain(provider, force=True)
    logger.info("requeued stale webhook events", extra={"count": len(rows), "providers": providers})
    return len(rows)


def webhook_follow_ups_send(*, now=None, limit=500):
    """Beat: send again the follow-ups of processed events that the broker never took (see the module docstring).

    Claimed under SKIP LOCKED and moved on by OUTBOX_BACKOFF_MAX_SECONDS before anything is sent, so two
    sweepers never send the same event's and one that dies mid-send costs a delay, not the work. Tasks are
    safe to repeat (a follow-up that was only slow runs twice and finds nothing left to do). Returns how many
    events' follow-ups were sent.
    """
    from celery import current_app
    from django.utils.module_loading import autodiscover_modules

    now = now or timezone.now()
    later = now + timedelta(seconds=settings.OUTBOX_BACKOFF_MAX_SECONDS)
    with transaction.atomic():
        rows = list(
            WebhookEvent.objects.filter(follow_ups_due_at__lte=now)
            .select_for_update(skip_locked=True)
            .order_by("follow_ups_due_at", "pk")
            .values_list("pk", "follow_ups")[:limit]
        )
        WebhookEvent.objects.filter(pk__in=[pk for pk, _ in rows]).update(follow_ups_due_at=later)
    if not rows:
        return 0
    autodiscover_modules("tasks")  # a task is looked up by name: every app's tasks must be registered
    sent = 0
    for pk, follow_ups in rows:
        # Every one checked before any is sent: a follow-up that a deploy left without its task (renamed, or
        # given other arguments) holds its event back whole, instead of sending the others on every sweep or
        # raising out of the beat task (which requeues stale events after this).
        try:
            sends = [(current_app.tasks[name], args, kwargs) for name, args, kwargs in follow_ups]
            for task, args, kwargs in sends:
                inspect.signature(task.run).bind(*args, **kwargs)
        except (KeyError, TypeError):
            logger.exception("a webhook follow-up names no task that takes it; tried again later", extra={"event": pk})
            continue
        try:
            for task, args, kwargs in sends:
                task.apply_async(args=args, kwargs=kwargs)
        except BrokerError:
            logger.exception("the broker refused webhook follow-ups; the next sweep sends them", extra={"event": pk})
            WebhookEvent.objects.filter(pk__in=[p for p, _ in rows], follow_ups_due_at=later).update(
                follow_ups_due_at=now
            )
            return sent
        WebhookEvent.objects.filter(pk=pk, follow_ups_due_at=later).update(follow_ups=[], follow_ups_due_at=None)
        sent += 1
    logger.warning("sent the follow-ups of %d webhook event(s) again", sent)
    return sent
