"""Price watches: a route searched again on a schedule, its price history, and a
note to the owner when the price drops.

Budget: each active watch is searched once per TRAVEL_WATCH_INTERVAL_MINUTES
(a date range: one date per check, in turn), at its own offset within that
interval (derived from its id), so a thousand watches spread over the interval
instead of all firing at once, and one watch's checks are an interval apart.
The beat sweeper (`watch_check_due`, every minute) enqueues
at most TRAVEL_WATCH_MAX_SEARCHES_PER_HOUR / 60 due watches per run; the rest
wait a minute, they are never skipped. Watches whose last departure date has
passed become `expired` and are never searched again. Searches go through the
search cache, so a watch on a route someone just searched costs nothing.

Notification, in the offers' currency:
- with a target price: when the price is below the target and below the price
  last told (after the price climbs back over the target, the next crossing
  notifies again);
- "any drop": when the price is at least drop_percent below the reference (the
  price last told, or the first price seen).
Both count only the dates still ahead: once a date of a range departs, the
reference is the watch's price when it was set without that date (`_reference`).
A rise never notifies. A notification is an info `Alert` for staff and an
email to the owner, sent by its own task (`travel.watch_notify`) through the
hub's mail path (`integrations.email.mail_send`): a `ProviderCall` per attempt,
an SMTP hiccup retried with backoff, and a final failure kept on the watch and
raised as an Alert, instead of a send inside the check that a mail outage lost.
"""

import logging
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.alerts import alert_raise
from integrations.email import mail_send
from integrations.errors import DomainError, ProviderUnavailable
from integrations.models import Alert
from integrations.registry import require
from integrations.states import IllegalTransition, transition
from integrations.task_base import enqueue_on_commit

from .. import airports
from ..models import PricePoint, PriceWatch
from ..providers import DEFAULT_MAX_CONNECTIONS, SearchQuery, SliceQuery
from .search import _fetch, _select, offer_at, search_key

logger = logging.getLogger(__name__)
Status = PriceWatch.Status
# A check that ran this recently is not run again (a redelivered or doubly enqueued task).
RECHECK_GUARD_SECONDS = 60


def slot_seconds(watch_id):
    """This watch's second of the hour: Fibonacci hashing spreads consecutive ids evenly over 0..3599."""
    return (((watch_id * 2654435761) & 0xFFFFFFFF) * 3600) >> 32


def next_check_after(watch_id, now, *, at_least=None):
    """The watch's next time on its own grid: every TRAVEL_WATCH_INTERVAL_MINUTES, at its slot scaled to the
    interval, at least `at_least` after `now`. By default three quarters of an interval: a check that ran up to a
    quarter of an interval late still has its next one interval after the last, and a check off the grid (the
    one a new watch makes at once) or one that ran later is never followed by another within 3/4 of an interval.

    Moving the slot within the hour instead, as before, rounded every interval down to whole hours: 90 minutes
    came hourly and 30 minutes too, spending more searches than the interval allows."""
    period = settings.TRAVEL_WATCH_INTERVAL_MINUTES * 60
    offset = slot_seconds(watch_id) * period / 3600
    earliest = now.timestamp() + (period * 0.75 if at_least is None else at_least.total_seconds())
    points = math.floor((earliest - offset) / period) + 1
    return datetime.fromtimestamp(points * period + offset, tz=UTC)


def watch_create(*, user, params):
    require("duffel")  # a watch that could never search is refused up front
    active = PriceWatch.objects.filter(owner=user, status__in=[Status.ACTIVE, Status.PAUSED]).count()
    if active >= settings.TRAVEL_WATCH_MAX_PER_USER:
        raise DomainError(
            409,
            "too_many_watches",
            f"You already have {active} watches (the limit is {settings.TRAVEL_WATCH_MAX_PER_USER}); cancel one first.",
        )
    passengers = params["passengers"]
    with transaction.atomic():
        watch = PriceWatch.objects.create(
            owner=user,
            origin=params["origin"],
            destination=params["destination"],
            departure_date=params["departure_date"],
            departure_date_to=params.get("departure_date_to"),
            return_date=params.get("return_date"),
            nights=params.get("nights"),
            adults=passengers["adults"],
            child_ages=sorted(passengers.get("children") or []),
            infants=passengers.get("infants", 0),
            cabin_class=params["cabin_class"],
            max_connections=params.get("max_connections"),
            include_airlines=params.get("include_airlines") or [],
            exclude_airlines=params.get("exclude_airlines") or [],
            target_price=params.get("target_price"),
            drop_percent=params.get("drop_percent"),
            # The first price comes from the check queued below; the next at the watch's slot.
            next_check_at=timezone.now() + timedelta(minutes=settings.TRAVEL_WATCH_INTERVAL_MINUTES),
        )
        from ..tasks import watch_check

        enqueue_on_commit(watch_check, watch.pk)
    return watch


def watch_set_status(*, watch, to):
    """Pause, resume or cancel a watch (owner through the API, staff through admin).

    A move the state machine does not allow (resuming an expired watch) is a 409.
    Resuming puts the watch back on its own slot of the interval, not at once.
    """
    fields = {}
    if to == Status.ACTIVE:
        if watch.last_departure < airports.local_today(watch.origin, timezone.now()):
            transition(PriceWatch, watch.pk, Status.EXPIRED)
            raise DomainError(409, "watch_expired", "This watch's departure dates have passed; it cannot resume.")
        fields["next_check_at"] = next_check_after(watch.pk, timezone.now(), at_least=timedelta(0))
    try:
        moved = transition(PriceWatch, watch.pk, to, strict=True, **fields)
    except IllegalTransition:
        raise DomainError(409, "illegal_transition", f"A watch that is {watch.status} cannot become {to}.") from None
    watch.refresh_from_db()
    return moved


def watch_cancel(*, user, watch_id):
    watch = watch_get(user=user, watch_id=watch_id)
    watch_set_status(watch=watch, to=Status.CANCELLED)
    return watch


def watch_get(*, user, watch_id):
    watch = PriceWatch.objects.filter(owner=user, pk=watch_id).first()
    if watch is None:
        raise DomainError(404, "not_found", "No such watch; check the id and that the watch is yours.")
    return watch


# --- the schedule ---------------------------------------------------------------------


def _expire_past(now):
    """Expire the watches whose last departure date has passed at their origin (dates are local there)."""
    expired = 0
    # Local dates are within a day of UTC's: the candidates depart no later than UTC's today.
    by = now.date() + timedelta(days=1)
    live = [Status.ACTIVE, Status.PAUSED]
    stale = PriceWatch.objects.filter(status__in=live, departure_date__lt=by, departure_date_to__isnull=True) | (
        PriceWatch.objects.filter(status__in=live, departure_date_to__lt=by)
    )
    for pk, origin, first, last in stale.values_list("pk", "origin", "departure_date", "departure_date_to"):
        if (last or first) < airports.local_today(origin, now):
            expired += transition(PriceWatch, pk, Status.EXPIRED)
    return expired


def watch_check_due(*, now=None):
    """Beat, every minute: expire finished watches, enqueue due ones within the search budget."""
    from ..tasks import watch_check

    now = now or timezone.now()
    _expire_past(now)
    budget = max(1, math.ceil(settings.TRAVEL_WATCH_MAX_SEARCHES_PER_HOUR / 60))
    due = list(
        PriceWatch.objects.filter(status=Status.ACTIVE, next_check_at__lte=now)
        .order_by("next_check_at")
        .values_list("pk", flat=True)[:budget]
    )
    queued = 0
    for pk in due:
        # Claim it: push its next check out so the next sweep does not queue it again;
        # the check itself sets the real next slot.
        claimed = PriceWatch.objects.filter(pk=pk, status=Status.ACTIVE, next_check_at__lte=now).update(
            next_check_at=now + timedelta(minutes=15)
        )
        if claimed:
            enqueue_on_commit(watch_check, pk)
            queued += 1
    return queued


# --- one check -------------------------------------------------------------------------------


def _query(watch, date):
    slices = [SliceQuery(origin=watch.origin, destination=watch.destination, departure_date=date.isoformat())]
    back = (
        watch.return_date
        if watch.departure_date_to is None
        else (date + timedelta(days=watch.nights) if watch.nights else None)
    )
    if back is not None:
        slices.append(SliceQuery(origin=watch.destination, destination=watch.origin, departure_date=back.isoformat()))
    return SearchQuery(
        slices=tuple(slices),
        adults=watch.adults,
        child_ages=tuple(sorted(watch.child_ages or ())),
        infants=watch.infants,
        cabin_class=watch.cabin_class,
        # A watch made before an omitted max_connections was stored as the default has none.
        max_connections=watch.max_connections if watch.max_connections is not None else DEFAULT_MAX_CONNECTIONS,
    )


def _current_price(watch, today, upto=None):
    """The cheapest of the latest price seen for each date still ahead (as of the point `upto`, if given)."""
    latest = {}
    points = watch.points.filter(departure_date__gte=today)
    if upto is not None:
        points = points.filter(checked_at__lte=upto.checked_at, id__lte=upto.pk)
    for point in points.order_by("-checked_at", "-id")[:500]:
        latest.setdefault(point.departure_date, point)
    prices = [(p.price, p.currency) for p in latest.values() if p.price is not None]
    if not prices:
        return None, ""
    return min(prices)


def _reference(watch, today):
    """The price drops are measured from, counting only the dates still ahead.

    It is the watch's price at the check that set it (the price last told, or the first seen) without the
    dates that have departed since: a departed date's price can no longer be bought, and measuring from it
    misses a drop of the dates left (or calls their first price a drop). When none of the dates left had a
    price at that check, a target watch has told the owner nothing about them (None: below the target
    notifies), and an "any drop" watch measures from the first price seen for them after it."""
    point = watch.reference_point
    if point is None:
        return watch.reference_price  # none yet, or set before the reference kept its check
    ref, _ = _current_price(watch, today, upto=point)
    if ref is None and watch.target_price is None:
        first = (
            watch.points.filter(departure_date__gte=today, price__isnull=False, id__gt=point.pk)
            .order_by("checked_at", "id")
            .first()
        )
        ref = first.price if first else None
    return ref


def _decide(watch, current):
    """(notify?, new reference price) for the watch's current price; see the module docstring."""
    ref = watch.reference_price
    if watch.target_price is not None:
        if current >= watch.target_price:
            return False, None  # above the target: the next crossing notifies again
        if ref is None or current < ref:
            return True, current
        return False, ref
    pct = Decimal(str(watch.drop_percent if watch.drop_percent is not None else settings.TRAVEL_WATCH_DROP_PERCENT))
    if ref is None:
        return False, current  # the first price seen is the baseline
    if current <= ref * (1 - pct / 100):
        return True, current
    return False, ref


def watch_check(*, watch_id):
    """Search the watch's next date once, record the price, notify on a drop. Returns what happened."""
    watch = PriceWatch.objects.filter(pk=watch_id).select_related("owner").first()
    if watch is None or watch.status != Status.ACTIVE:
        return "skipped"
    now = timezone.now()
    today = airports.local_today(watch.origin, now)  # departure dates are local to the origin
    if watch.last_departure < today:
        transition(PriceWatch, watch.pk, Status.EXPIRED)
        return "expired"
    if watch.last_checked_at and (now - watch.last_checked_at).total_seconds() < RECHECK_GUARD_SECONDS:
        return "skipped"
    dates = [d for d in watch.watched_dates() if d >= today]
    date = dates[watch.next_date_index % len(dates)]
    query = _query(watch, date)
    # Someone's search of the same trip minutes ago is as good as a new one (and costs nothing);
    # an older answer is not what "the price now" means.
    try:
        entry, _ = _fetch(
            query,
            search_key(query),
            user=watch.owner,
            refresh=False,
            max_age=settings.TRAVEL_WATCH_MAX_CACHE_AGE_SECONDS,
        )
    except DomainError as exc:
        # Another caller's failed search, or one still running: the task's retry loop handles both.
        raise ProviderUnavailable("duffel", exc.detail, retry_after=exc.extra.get("retry_after") or 30) from exc
    picked = _select(
        entry,
        filters={
            "include_airlines": watch.include_airlines,
            "exclude_airlines": watch.exclude_airlines,
            "sort": "price",
        },
        now=now.timestamp(),
    )
    best = offer_at(entry, picked[0]) if picked else None

    with transaction.atomic():
        watch = PriceWatch.objects.select_for_update().get(pk=watch.pk)
        if watch.status != Status.ACTIVE:
            # Paused or cancelled while the search ran: the owner asked not to hear about it any more.
            return "skipped"
        if watch.last_checked_at and (now - watch.last_checked_at).total_seconds() < RECHECK_GUARD_SECONDS:
            # Another delivery of this check passed the guard above too and recorded its price first.
            return "skipped"
        point = PricePoint.objects.create(
            watch=watch,
            checked_at=now,
            departure_date=date,
            price=Decimal(best["total_amount"]) if best else None,
            currency=best["total_currency"] if best else "",
            offer_id=best["id"] if best else "",
            airline=(best["owner"]["iata_code"] or "") if best else "",
            offer_count=len(picked),
        )
        current, currency = _current_price(watch, today)
        notify = False
        if current is not None:
            if watch.currency and currency != watch.currency:
                # The account's selling currency changed: start again from this price.
                watch.reference_price, watch.reference_point = None, None
            else:
                watch.reference_price = _reference(watch, today)
            watch.currency = currency
            before = watch.reference_price
            notify, watch.reference_price = _decide(watch, current)
            if watch.reference_price != before:
                # A new reference is the watch's price at this check.
                watch.reference_point = point if watch.reference_price is not None else None
        watch.last_price = current
        watch.last_checked_at = now
        watch.last_error = ""
        watch.next_date_index = (watch.next_date_index + 1) % max(1, len(dates))
        watch.next_check_at = next_check_after(watch.pk, now)
        if notify:
            watch.last_notified_at = now
            point.notified = True
            point.save(update_fields=["notified"])
        watch.save()
    if notify:
        _notify(watch, point, current)
        return "notified"
    return "recorded"


def watch_check_failed(*, watch_id, error):
    """The check task gave up (ProviderTask.give_up): keep the reason on the watch, try at the next slot.

    A range moves on to its next date, as after a success: a date the provider keeps refusing would
    otherwise be the only one of the range ever searched."""
    watch = PriceWatch.objects.filter(pk=watch_id).first()
    if watch is None:
        return
    PriceWatch.objects.filter(pk=watch_id).update(
        last_error=str(error)[:255],
        next_check_at=next_check_after(watch_id, timezone.now()),
        next_date_index=(watch.next_date_index + 1) % len(watch.watched_dates()),
    )


def _describe(watch):
    trip = f"{watch.origin} → {watch.destination} on {watch.departure_date}"
    if watch.departure_date_to:
        trip = f"{watch.origin} → {watch.destination}, departing {watch.departure_date} to {watch.departure_date_to}"
    if watch.return_date:
        trip += f", back {watch.return_date}"
    return trip


def price_drop_alert_prefix(watch_id):
    """Every price-drop alert of a watch has a key starting so (travel.privacy redacts them at erasure)."""
    return f"price_drop:watch:{watch_id}:"


def _notify(watch, point, current):
    alert_raise(
        kind=Alert.Kind.PRICE_DROP,
        provider="duffel",
        severity=Alert.Severity.INFO,
        message=_notice(watch, current),
        dedupe_key=f"{price_drop_alert_prefix(watch.pk)}{point.pk}",
    )
    if not watch.owner.email:
        logger.info("price watch %s: owner has no email address", watch.pk)
        return
    # The email leaves the check: the price is recorded and the alert raised
    # whatever the mail server does, and the send gets the email task's retries.
    from ..tasks import watch_notify as task

    enqueue_on_commit(task, point.pk)


def _notice(watch, current):
    why = (
        f"below your target of {watch.target_price} {watch.currency}"
        if watch.target_price is not None
        else "down from the last price we told you"
    )
    return f"Price watch #{watch.pk} ({_describe(watch)}): now {current} {watch.currency}, {why}."


def watch_notify(*, point_id):
    """Email the owner about the price drop recorded at this point (the `watch_notify` task)."""
    point = PricePoint.objects.select_related("watch__owner").filter(pk=point_id, notified=True).first()
    if point is None or point.emailed_at is not None or not point.watch.owner.email:
        return False
    watch = point.watch
    # The price the check told about, not whatever later checks found.
    current, _ = _current_price(watch, airports.local_today(watch.origin, point.checked_at), upto=point)
    mail_send(
        subject=f"Flight price drop: {watch.origin} → {watch.destination} now {current} {watch.currency}",
        message=(
            f"{_notice(watch, current)}\n\nCheapest offer on {point.departure_date}: {point.price} {point.currency}"
            f" ({point.airline or 'airline n/a'}). Offers change quickly; search again to book.\n"
        ),
        to=[watch.owner.email],
        owner=watch.owner_id,
        related=watch,
    )
    PricePoint.objects.filter(pk=point.pk).update(emailed_at=timezone.now())
    return True


def watch_notify_failed(*, point_id, error):
    """The email task gave up: say so on the watch (the task's Alert tells staff)."""
    PriceWatch.objects.filter(points=point_id).update(last_error=f"price-drop email not sent: {error}"[:255])


def watch_history(*, watch):
    """The price history as chart-ready series: one per departure date, plus the watch's best price over time."""
    series, best, running = {}, [], {}
    for p in watch.points.order_by("checked_at", "id"):
        key = p.departure_date.isoformat()
        price = str(p.price) if p.price is not None else None
        series.setdefault(key, []).append({"t": p.checked_at.isoformat(), "price": price, "notified": p.notified})
        running[p.departure_date] = p.price
        # As the check saw it (_current_price): a date of the range that had departed by then is no price to have.
        today = airports.local_today(watch.origin, p.checked_at)
        known = [v for day, v in running.items() if v is not None and day >= today]
        best.append({"t": p.checked_at.isoformat(), "price": str(min(known)) if known else None})
    return {
        "currency": watch.currency,
        "target_price": str(watch.target_price) if watch.target_price is not None else None,
        "best": best,
        "series": [{"departure_date": k, "points": v} for k, v in series.items()],
    }
