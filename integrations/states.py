"""The one way a row with a state machine changes state.

Every model with a state machine declares its table once, as
`TRANSITIONS = {state: {allowed next states}}`, on a `status` field (or the
field named by `STATE_FIELD`). `transition(Model, pk, to, ...)` applies a move
only if the model's TRANSITIONS allow it from the state the row is in *now*, with a conditional
UPDATE (`WHERE status = <what we read>`), so two workers, a redelivered task
and a late webhook can race and the row still only moves forward. With
`occurred_at` (a Stripe event's `created`), an event older than the newest one
already applied to the row is stale and changes nothing. With `frm`, the move
happens only from that state (a task that read `sending` must not move a row
another run has since put elsewhere); `where` adds conditions of its own
(`Q(external_id__isnull=True)`: only a row Twilio never saw).
"""

from django.core.exceptions import FieldDoesNotExist
from django.db.models import Q

from .compiled_sql import compiled_update


class IllegalTransition(Exception):
    def __init__(self, model, frm, to):
        super().__init__(f"{model.__name__} cannot go from {frm!r} to {to!r}")
        self.frm, self.to = frm, to


def allowed(model, frm, to):
    return to in model.TRANSITIONS.get(frm, set())


def state_field(model):
    return getattr(model, "STATE_FIELD", "status")


def transition(model, pk, to, *, frm=None, where=None, occurred_at=None, strict=False, seen=None, **fields):
    """Move row `pk` to `to`; True if it moved. A no-op (already there, stale, not allowed) is False.

    strict=True raises IllegalTransition for a move the machine forbids (staff
    actions want to know); webhooks and reconciliation pass strict=False and
    simply leave the row alone. `seen` is the state the caller read a moment
    ago: when it allows the move, the conditional UPDATE is tried from it
    without reading the row first (one query instead of two for a batch of
    webhook events); every other outcome, a stale guess included, is decided on a fresh read.
    """
    field = state_field(model)
    expected = frm
    guess = seen if seen is not None and seen != to and allowed(model, seen, to) else None
    for _ in range(3):
        guessed = guess is not None
        if guessed:
            frm, guess = guess, None
        elif expected is None:
            current = model.objects.filter(pk=pk).values(field).first()
            if current is None:
                return False
            frm = current[field]
        if frm == to:
            return False
        if not allowed(model, frm, to):
            if strict:
                raise IllegalTransition(model, frm, to)
            return False
        if _move(model, pk, field, frm, to, where=where, occurred_at=occurred_at, fields=fields) == 1:
            return True
        if (
            occurred_at is not None
            and model.objects.filter(pk=pk, **{field: frm}, last_event_at__gt=occurred_at).exists()
        ):
            return False  # a newer event was already applied: this one is stale
        if guessed and expected is None:
            continue  # the caller's guess was stale: decide on a fresh read
        if expected is not None or where is not None:
            return False  # not in the state the caller read, or not a row the condition allows
        # Someone else moved the row between our read and our update: decide again.
    return False


# (model, where, stale check, fields set, database) -> the conditional UPDATE of a move, compiled once
# (integrations.compiled_sql): a drained webhook batch makes one or two moves per event.
_statements = {}


def _compilable(model, where, fields):
    """Whether the move's UPDATE can be kept: plain values of plain columns, and a `where` to key it by."""
    try:
        hash(where)
    except TypeError:
        return False
    for name, value in fields.items():
        try:
            column = model._meta.get_field(name)
        except FieldDoesNotExist:
            return False
        if column.is_relation or not column.concrete or hasattr(value, "resolve_expression"):
            return False
    return True


def _move(model, pk, field, frm, to, *, where, occurred_at, fields):
    """UPDATE row `pk` from `frm` to `to` where `where` allows it and no newer event was applied: rows moved."""

    def build(_pk, _frm, _to, _at=None, **changes):
        rows = model.objects.filter(pk=_pk, **{field: _frm})
        if where is not None:
            rows = rows.filter(where)
        if occurred_at is not None:
            rows = rows.filter(Q(last_event_at__isnull=True) | Q(last_event_at__lte=_at))
            changes["last_event_at"] = _at
        return rows, {field: _to, **changes}

    values = {"_pk": pk, "_frm": frm, "_to": to, **fields}
    if occurred_at is not None:
        values["_at"] = occurred_at
    if not _compilable(model, where, fields):
        rows, changes = build(**values)
        return rows.update(**changes)
    meta = model._meta
    columns = {"_pk": meta.pk, "_frm": meta.get_field(field), "_to": meta.get_field(field)}
    if occurred_at is not None:
        columns["_at"] = meta.get_field("last_event_at")
    columns.update((name, meta.get_field(name)) for name in fields)
    key = (model, where, occurred_at is not None, tuple(sorted(fields)))
    return compiled_update(_statements, key, model, build, columns, **values)
