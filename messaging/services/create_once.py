"""Create a message or a call on Twilio at most once, though Twilio takes no idempotency key.

Twilio's Messages and Calls APIs accept no idempotency key. Each create call is
recorded on the row (send_doubt=in_flight) with a conditional UPDATE against
what the run read, so two runs never both create; only a clean answer clears
it: a SID, a 4xx, or a refusal before anything was sent. A run that finds the
doubt still set (a timeout, a connection error, a 5xx, or a worker that died
mid-call) looks the row up on Twilio first and adopts what it finds instead of
creating it again. SMS and calls differ only in what their `CreateOnce` subclass names.
"""

import datetime as dt

from django.conf import settings
from django.db.models import DateTimeField, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from integrations.errors import CircuitOpen, PermanentError, ProviderError, ProviderRateLimited, RateLimited
from integrations.states import transition

from ..models import SendDoubt

# How far Twilio's clock may run behind ours when a lookup matches a row by its date_created.
LOOKUP_CLOCK_SKEW = dt.timedelta(seconds=120)
# After a create call's own timeout, how long before a redelivered run treats it as over.
IN_FLIGHT_MARGIN_SECONDS = 5.0


class SendInFlight(Exception):
    """A redelivered run while the last create call may still be running; look it up after `wait` seconds."""

    def __init__(self, wait):
        super().__init__(f"the last create call may still be running; check again in {wait:.0f} s")
        self.wait = wait


class CreateOnce:
    """What differs between creating an SMS and placing a call: a subclass names it, the rest is shared.

    An instance names the model, `working` (the status of a row handed to
    Twilio: "sending", "dialing"), `done` (what a run that created it returns:
    "sent", "placed") and `statuses` (Twilio's status -> ours); its subclass
    implements the one create call, the adapter's list and what a listed
    result must match.
    Its public entry points are `run`, `lookup` and `give_up`.
    """

    def __init__(self, model, *, working, done, statuses):
        self.model, self.working, self.done, self.statuses = model, working, done, statuses

    def create(self, row, **addressed):
        """The one create call: a result with .sid and .status.

        `addressed` is what the base passes to both the create and the list
        call: to=, sender= and the ProviderCall's owner= and related=.
        """
        raise NotImplementedError

    def list_page(self, *, on_or_after, **addressed):
        """The adapter's list of results sent (on or after a day, or any day) with these addresses."""
        raise NotImplementedError

    def matches(self, row, listed):
        """A listed result that our create call may have left."""
        raise NotImplementedError

    def stamped_fields(self, row, result):
        """What to store beside the SID."""
        return {}

    def before_create(self, row):
        """An outcome that stops the run before anything is sent, or None."""
        return None

    def refused(self, row, exc):
        """What a ProviderError from the create call also means (nothing by default)."""

    def run(self, pk):
        """The send task's work: at most one on Twilio per row."""
        return create_once(self, pk)

    def lookup(self, row):
        """What a lost create call left on Twilio, or None."""
        return lookup_lost(self, row)

    def give_up(self, pk, error):
        give_up(self.model, pk, working=self.working, error=error)


def _addressed(row):
    """To, sender, and whom the ProviderCall is booked to: the same for the create call and the lookup."""
    # A message sent through a messaging service is sent and looked up by the service, whatever number it chose.
    sender = getattr(row, "messaging_service_sid", "") or row.from_number
    return {"to": row.to_number, "sender": sender, "owner": row.owner_id, "related": row}


def _nothing_sent(exc):
    """Twilio answered a clean refusal, or the call never left the hub: nothing can exist."""
    return isinstance(exc, (RateLimited, ProviderRateLimited, CircuitOpen, PermanentError))


def _longest_call():
    conf = settings.PROVIDER_TIMEOUTS.get("twilio", settings.PROVIDER_TIMEOUTS["default"])
    # Whichever the call that started ran with, plus the margin.
    return dt.timedelta(seconds=max(conf["web"], conf["task"]) + IN_FLIGHT_MARGIN_SECONDS)


def _attempt_claim(model, row, *, status):
    """Record that a create call starts now; None if another run changed the row since we read it."""
    now = timezone.now()
    claimed = model.objects.filter(
        pk=row.pk,
        status=status,
        external_id__isnull=True,
        send_doubt=row.send_doubt,
        send_attempted_at=row.send_attempted_at,
    ).update(
        send_doubt=SendDoubt.IN_FLIGHT,
        send_attempted_at=now,
        send_started_at=Coalesce("send_started_at", Value(now, output_field=DateTimeField())),
    )
    return now if claimed else None


def _attempt_settle(model, row, *, started, exc):
    """A create call that raised: cleared if nothing can exist on Twilio, else left ambiguous."""
    if _nothing_sent(exc):
        # Nothing to look up, and the lookup window starts at the next real attempt.
        settled = {"send_doubt": SendDoubt.NONE, "send_started_at": row.send_started_at}
    else:
        settled = {"send_doubt": SendDoubt.AMBIGUOUS}
    model.objects.filter(pk=row.pk, send_attempted_at=started).update(**settled)


def in_flight_wait(row):
    """Seconds until a create call that started at send_attempted_at must have ended (0 if it has)."""
    if row.send_attempted_at is None:
        return 0.0
    over = row.send_attempted_at + _longest_call()
    return max(0.0, (over - timezone.now()).total_seconds())


def _lookup_pick(model, row, candidates):
    """The oldest candidate created before our last create call could have ended whose SID no other row holds.

    The upper bound keeps a later, unrelated message or call to the same
    number (the console, another system on the account) from being adopted.
    """
    if row.send_attempted_at is not None:
        until = row.send_attempted_at + _longest_call() + LOOKUP_CLOCK_SKEW
        candidates = [c for c in candidates if c.date_created is None or c.date_created <= until]
    taken = set(
        model.objects.filter(external_id__in=[c.sid for c in candidates])
        .exclude(pk=row.pk)
        .values_list("external_id", flat=True)
    )
    candidates = [c for c in candidates if c.sid not in taken]
    return min(candidates, key=lambda c: c.date_created) if candidates else None


def lookup_lost(spec, row):
    """What a lost create call left on Twilio, or None.

    A listed result that `spec.matches`, created no earlier than our first
    create call started (less LOOKUP_CLOCK_SKEW) and no later than our last one
    could have ended, whose SID no other row holds; the oldest if several.
    First listed with a date filter from that day on, then, if nothing
    matched, without it: Twilio sets DateSent / StartTime only once it has
    sent or dialed, so an accepted but queued one is found only unfiltered.
    """
    since = (row.send_started_at or row.created_at) - LOOKUP_CLOCK_SKEW
    for day in (since.astimezone(dt.UTC).date(), None):
        listed = spec.list_page(on_or_after=day, **_addressed(row))
        candidates = [
            c for c in listed if c.date_created is not None and c.date_created >= since and spec.matches(row, c)
        ]
        found = _lookup_pick(spec.model, row, candidates)
        if found is not None:
            return found
    return None


def create_once(spec, pk):
    """The send task's work: at most one message or call on Twilio per row."""
    model = spec.model
    row = model.objects.filter(pk=pk).first()
    if row is None or row.external_id or row.status not in ("queued", spec.working):
        return "skipped"
    if row.send_doubt:
        # Queued too: a row re-queued (staff, a limiter deferral) after an ambiguous attempt is still in doubt.
        if row.send_doubt == SendDoubt.IN_FLIGHT:
            wait = in_flight_wait(row)
            if wait > 0:
                raise SendInFlight(wait)
        found = lookup_lost(spec, row)
        if found is not None:
            if row.status == "queued":
                transition(model, pk, spec.working, frm="queued")
            return "found" if accept(spec, row, found) else "skipped"
    stopped = spec.before_create(row)
    if stopped:
        return stopped
    if row.status == "queued" and not transition(model, pk, spec.working, frm="queued"):
        return "skipped"
    # Claim this attempt against what we read, so two concurrent runs never both create.
    started = _attempt_claim(model, row, status=spec.working)
    if started is None:
        return "skipped"
    try:
        result = spec.create(row, **_addressed(row))
    except Exception as exc:
        _attempt_settle(model, row, started=started, exc=exc)
        if isinstance(exc, (RateLimited, ProviderRateLimited)):
            transition(model, pk, "queued", frm=spec.working)  # refused before sending: nothing went out
        elif isinstance(exc, ProviderError):
            spec.refused(row, exc)
            if not exc.retryable:
                fields = {"error_code": str(exc.code or ""), "error_message": exc.message}
                transition(model, pk, "failed", frm=spec.working, **fields)
        raise
    accept(spec, row, result)
    return spec.done


def accept(spec, row, result):
    """Twilio has it (created now, or found by a lookup): store its SID and move the row on.

    False if the row already holds another SID. A found row may be long over;
    its price is then booked by costs_unbooked_sweep.
    """
    stamped = sid_stamp(spec.model, row, result.sid, **spec.stamped_fields(row, result))
    target = spec.statuses.get(result.status, spec.working)
    if stamped and target != spec.working:
        errors = {k: getattr(result, k) for k in ("error_code", "error_message") if hasattr(result, k)}
        transition(spec.model, row.pk, target, frm=spec.working, **errors)
    return stamped


def sid_stamp(model, row, sid, **fields):
    """Store Twilio's SID on the row (and clear the doubt); False if another SID got there first.

    A callback that raced the create call's response may already have stamped
    the same SID and moved the status on: that still counts as ours.
    """
    rows = model.objects.filter(pk=row.pk).filter(Q(external_id__isnull=True) | Q(external_id=sid))
    return bool(rows.update(external_id=sid, send_doubt=SendDoubt.NONE, **fields))


def give_up(model, pk, *, working, error):
    """The task's last attempt failed: the row fails, unless Twilio has it (a SID) or it moved on."""
    transition(
        model,
        pk,
        "failed",
        where=Q(status__in=["queued", working], external_id__isnull=True),
        error_code=str(getattr(error, "code", "") or "")[:16],
        error_message=str(getattr(error, "message", error))[:2000],
    )
