"""Receiving: verify, store once, enqueue on commit, answer 200 fast.

Nothing slow happens in the request: providers time out (Stripe after ~10 s,
Twilio after 15 s) and retry, so all real work waits for the Celery task.
"""

import contextlib
import functools
import logging
import threading

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from ..alerting.counters import signature_failure_count
from ..api.guards import strip_unstorable
from ..compiled_sql import parameter_cursor
from ..metrics import webhook_events
from ..models import WebhookEvent
from .dispatch import request_drain_on_commit
from .registry import ordering_key_for, verifier_for
from .sources import source_allowed
from .verify import InboundEvent, WebhookRejected, body_too_big

logger = logging.getLogger(__name__)


def error_response(status, code, detail, **headers):
    response = JsonResponse({"error": code, "detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _check(inbound):
    if not isinstance(inbound, InboundEvent):
        raise TypeError(f"a webhook verifier must return InboundEvent, not {type(inbound).__name__}")
    # A signed delivery is genuine even with a NUL in a field (a Twilio SMS body
    # can carry one): refusing it would make the provider retry forever, storing
    # it fails in PostgreSQL. Strip what cannot be stored; the signature was
    # already checked over the bytes as sent.
    inbound.event_id = strip_unstorable(inbound.event_id)
    inbound.type = strip_unstorable(inbound.type)
    inbound.payload = _storable(inbound.payload)
    inbound.headers = strip_unstorable(inbound.headers)
    if not isinstance(inbound.event_id, str) or not inbound.event_id or len(inbound.event_id) > 255:
        raise WebhookRejected(400, "malformed_event", "The event has no usable id.")
    if not isinstance(inbound.type, str) or len(inbound.type) > 128:
        raise WebhookRejected(400, "malformed_event", "The event type is missing or too long.")


def _storable(payload):
    """The payload without NUL or lone surrogates, walked only when it holds one.

    orjson refuses a lone surrogate and writes NUL as \\u0000, so one C-speed
    serialisation says whether the Python walk of strip_unstorable is needed
    (for a 2.5 kB Stripe event, 2 us instead of 57). Anything orjson cannot
    write (an integer beyond 64 bits) is simply walked.
    """
    try:
        if b"\\u0000" not in orjson.dumps(payload):
            return payload
    except TypeError:  # orjson.JSONEncodeError
        pass
    return strip_unstorable(payload)


def _insert_once(event):
    """INSERT ... ON CONFLICT (provider, event_id) DO NOTHING RETURNING id: (the new id, or None for a duplicate;
    whether the event's drain was requested already).

    The ORM's bulk_create(ignore_conflicts=True) cannot say whether it inserted,
    and create() + IntegrityError makes PostgreSQL log an error for every
    duplicate delivery. Works on PostgreSQL and SQLite >= 3.35.

    On PostgreSQL in autocommit, deliveries that reach this point at the same
    time in one process are stored by one statement (_GroupInsert).
    """
    # The connection itself, not the `connection` proxy: every attribute read through the proxy looks the
    # connection up again in its context-local storage, and preparing the 16 values reads ~30 (~13 us).
    conn = connections[DEFAULT_DB_ALIAS]
    fields, sql = _insert_statement(conn.vendor)
    values = [f.get_db_prep_save(f.pre_save(event, add=True), conn) for f in fields]
    if conn.vendor == "postgresql" and not conn.in_atomic_block:
        return _group_insert.insert(conn, (event.provider, event.event_id), values)
    return _insert_row(conn, sql, values), False


def _insert_row(conn, sql, values):
    with _insert_cursor(conn) as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    return row[0] if row else None


class _Slot:
    __slots__ = ("key", "values", "ready", "pk", "failed", "lead", "drain_requested")

    def __init__(self, key, values):
        self.key, self.values = key, values
        self.ready = threading.Event()
        self.pk = None
        self.failed = False  # the group's statement raised: this delivery is stored by a statement of its own
        self.lead = False  # woken to store the deliveries that arrived meanwhile
        self.drain_requested = False


class _GroupInsert:
    """Group commit for the ack path: deliveries that arrive while an INSERT is running go in the next one.

    Each delivery stored alone costs a statement and a commit (a WAL flush it waits for) of its own, and a
    pooled connection checked out for it. Here the first delivery is inserted at once, by its own thread;
    deliveries of other threads of the process that reach the INSERT meanwhile wait, and when it is done
    the first of them stores all of them with one multi-row INSERT ... ON CONFLICT DO NOTHING on its own
    connection, in autocommit, and so on: nothing waits for a batch to fill, a delivery that finds no
    INSERT running goes at once (as does one that waited GROUP_WAIT_SECONDS without being taken), and each
    delivery is answered only once its row is committed, exactly as alone. A duplicate in the same statement is inserted once (the first in it, which is answered as
    created). If the statement fails, each of its deliveries is inserted again by its own thread, alone:
    the outcome each would have had without the group (a database error is that delivery's 500).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._waiting = []
        self._running = False

    def insert(self, conn, key, values):
        slot = _Slot(key, values)
        with self._lock:
            if self._running:
                self._waiting.append(slot)
            else:
                self._running = slot.lead = True
        if not slot.lead and not slot.ready.wait(GROUP_WAIT_SECONDS):
            # The INSERT running is slow (a lock wait): not yet taken into the next group, store this one alone.
            with self._lock:
                alone = slot in self._waiting
                if alone:
                    self._waiting.remove(slot)
            if alone:
                return _insert_row(conn, _insert_statement(conn.vendor)[1], values), False
            slot.ready.wait()
        if slot.lead:
            self._lead(conn, slot)
        if slot.failed:
            return _insert_row(conn, _insert_statement(conn.vendor)[1], values), False
        return slot.pk, slot.drain_requested

    def _lead(self, conn, slot):
        """Store `slot`'s group: itself and the deliveries waiting when it began (at most GROUP_MAX)."""
        with self._lock:
            group = [slot, *self._waiting[: GROUP_MAX - 1]]
            del self._waiting[: GROUP_MAX - 1]
        try:
            if len(group) == 1:
                slot.pk = _insert_row(conn, _insert_statement(conn.vendor)[1], slot.values)  # raises as alone
            else:
                for each in group:
                    each.failed = True  # until the statement has answered for it
                with contextlib.suppress(Exception):  # each delivery is then inserted alone (insert())
                    self._store(conn, group)
                # Committed (autocommit): one drain request per provider for the new events of the group,
                # not one per event, each a Redis round trip (dispatch.py).
                for provider in {each.key[0] for each in group if each.pk is not None and not each.failed}:
                    request_drain_on_commit(provider)
                for each in group:
                    each.drain_requested = True
        finally:
            with self._lock:
                following = self._waiting.pop(0) if self._waiting else None
                if following is None:
                    self._running = False
                else:
                    following.lead = True
            if following is not None:
                following.ready.set()
            for each in group[1:]:
                each.ready.set()

    @staticmethod
    def _store(conn, group):
        with _insert_cursor(conn) as cursor:
            cursor.execute(_group_statement(len(group)), [v for each in group for v in each.values])
            created = {(provider, event_id): pk for pk, provider, event_id in cursor.fetchall()}
        for each in group:
            each.pk = created.pop(each.key, None)  # of two in one statement, the first was inserted
            each.failed = False


# Deliveries stored by one statement at most (each takes 16 parameters; PostgreSQL allows 65,535), and how
# long a delivery waits for the INSERT running before it is stored alone (that one is stuck on a lock).
GROUP_MAX = 64
GROUP_WAIT_SECONDS = 1.0
_group_insert = _GroupInsert()


@functools.cache
def _group_statement(rows):
    fields, sql = _insert_statement("postgresql")
    row = f"({', '.join(['%s'] * len(fields))})"
    head, _, tail = sql.partition(f"VALUES {row} ")
    qn = connection.ops.quote_name
    returning = f"RETURNING {qn(WebhookEvent._meta.pk.column)}, {qn('provider')}, {qn('event_id')}"
    return f"{head}VALUES {', '.join([row] * rows)} {tail.rpartition('RETURNING')[0]}{returning}"


def _insert_cursor(conn):
    """A cursor for _insert_once: on PostgreSQL one that sends the values beside the statement.

    The INSERT has 17 values, two of them a JSON document each: quoted into the SQL text by Django's default
    cursor they cost about a third of the CPU of running it (compiled_sql.parameter_cursor).
    """
    return parameter_cursor(conn)


@functools.cache
def _insert_statement(vendor):
    """The fields and SQL of _insert_once, built once per process (it runs for every delivery)."""
    fields = [f for f in WebhookEvent._meta.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    sql = (
        f"INSERT INTO {qn(WebhookEvent._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({qn('provider')}, {qn('event_id')}) DO NOTHING RETURNING {qn(WebhookEvent._meta.pk.column)}"
    )
    return fields, sql


def enqueue_processing(event):
    """Have the event's provider drained once the surrounding transaction commits (coalesced: see dispatch.py)."""
    request_drain_on_commit(event.provider)


def _object_key(provider, payload):
    key_of = ordering_key_for(provider)
    if key_of is None:
        return ""
    try:
        return str(key_of(payload) or "")[:255]
    except Exception:  # noqa: BLE001 - a key function's bug must not cost the provider its 200; order is then arrival's
        logger.warning("webhook ordering key failed", exc_info=True, extra={"provider": provider})
        return ""


def record_webhook(*, provider, inbound):
    """Store a verified event once and enqueue its processing: returns (event, created).

    For views that must answer synchronously (Twilio voice TwiML): they call
    this with their verifier's InboundEvent, then build their own response.
    A duplicate delivery returns the existing row and created=False.
    """
    _check(inbound)
    event, created = _store(provider, inbound)
    if not created:
        event = WebhookEvent.objects.get(provider=provider, event_id=inbound.event_id)
    return event, created


def _store(provider, inbound):
    """Insert a checked event once: (event, created). For a duplicate, `event` is the unsaved delivery,
    not the stored row (receive_webhook answers with its event id alone; record_webhook reads the row)."""
    now = timezone.now()
    event = WebhookEvent(
        provider=provider,
        event_id=inbound.event_id,
        type=inbound.type,
        payload=inbound.payload,
        headers=inbound.headers,
        signature_verified=inbound.signature_verified,
        occurred_at=inbound.occurred_at,
        next_attempt_at=now,
        object_key=_object_key(provider, inbound.payload),
    )
    # One statement, so no transaction of our own: in autocommit it commits by itself (no BEGIN and
    # COMMIT round trips on the ack path), inside a caller's transaction it is part of it, and either
    # way the drain is requested once the row is committed (for a group of deliveries stored together,
    # once by the thread that stored them: _GroupInsert).
    pk, drain_requested = _insert_once(event)
    created = pk is not None
    if created:
        event.pk = pk
        event._state.adding = False
        event._state.db = connection.alias
        if not drain_requested:
            enqueue_processing(event)
    webhook_events.labels(provider, "received" if created else "duplicate").inc()
    # A new event is recorded by its row, the metric and the access log line; a log line of its own
    # costs every delivery ~5 % of its CPU, so only duplicates (a provider retrying) are logged at INFO.
    logger.log(
        logging.DEBUG if created else logging.INFO,
        "webhook %s",
        "received" if created else "duplicate",
        extra={"provider": provider, "event_id": inbound.event_id, "event_type": inbound.type},
    )
    return event, created


def receive_webhook(request, *, provider, verify, respond=None):
    """The whole inbox contract for one request; provider views call this (or use webhook_view).

    POST only (JSON 405), body at most WEBHOOK_MAX_BYTES (JSON 413), verify()
    may raise WebhookRejected (JSON 400/403/503, nothing stored), then each
    event is stored once and processed after commit. Answers 200
    {"status": "received" | "duplicate", ...}; `respond(event, created)`, if
    given, builds the response instead (single-event synchronous webhooks).
    """
    if request.method != "POST":
        return error_response(
            405, "method_not_allowed", f"Webhooks accept POST only, not {request.method}.", Allow="POST"
        )
    allowed, address = source_allowed(request, provider)
    if not allowed:
        # Before the body is read or any HMAC computed: forged traffic from elsewhere costs nothing.
        webhook_events.labels(provider, "rejected").inc()
        logger.warning("webhook source refused", extra={"provider": provider, "source": str(address or "")})
        return error_response(
            403, "source_not_allowed", f"Deliveries for {provider} are accepted only from its published networks."
        )
    if body_too_big(request):
        webhook_events.labels(provider, "rejected").inc()
        return error_response(
            413, "payload_too_large", f"The body exceeds the hub's webhook limit of {settings.WEBHOOK_MAX_BYTES} bytes."
        )
    try:
        inbound = verify(request)
        events = list(inbound) if isinstance(inbound, list | tuple) else [inbound]
        for item in events:
            _check(item)
    except WebhookRejected as exc:
        webhook_events.labels(provider, "rejected").inc()
        logger.warning("webhook rejected", extra={"provider": provider, "reason": exc.code, "status": exc.status})
        if exc.status == 403:
            signature_failure_count(provider=provider)  # a spike alerts staff (integrations.alerting.thresholds)
        return error_response(exc.status, exc.code, exc.detail)

    if respond is not None:
        if len(events) != 1:
            raise TypeError("respond= needs a verifier that returns exactly one event")
        event, created = _store(provider, events[0])
        if not created:
            event = WebhookEvent.objects.get(provider=provider, event_id=event.event_id)
        return respond(event, created)
    # Checked above, so stored without a second check; a duplicate's row is not read back (only its id is answered).
    results = [_store(provider, item) for item in events]
    if len(results) == 1:
        event, created = results[0]
        return JsonResponse({"status": "received" if created else "duplicate", "event_id": event.event_id})
    # Batched deliveries (Microsoft Graph sends several notifications per POST).
    received = sum(1 for _, created in results if created)
    return JsonResponse({"status": "received", "received": received, "duplicate": len(results) - received})


def webhook_view(*, provider, verify, respond=None):
    """A ready view for urls.py: path("webhooks/acme/", webhook_view(provider="acme", verify=acme_verify))."""

    @csrf_exempt  # providers cannot send a CSRF token; the signature is the authentication
    def view(request, *args, **kwargs):
        return receive_webhook(request, provider=provider, verify=verify, respond=respond)

    view.__name__ = f"{provider}_webhook"
    return view


@csrf_exempt
def inbox(request, provider):
    """POST /webhooks/<provider>/ for every provider whose app registered a @webhook_verifier."""
    verify = verifier_for(provider)
    if verify is None:
        return error_response(404, "unknown_webhook", f"No webhook is registered for provider {provider!r}.")
    return receive_webhook(request, provider=provider, verify=verify)
