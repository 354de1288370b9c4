"""What travel holds about a user (privacy registry): price watches and their price history."""

from django.db.models import Q

from integrations.models import Alert
from integrations.states import transition
from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .models import PricePoint, PriceWatch
from .services.watches import price_drop_alert_prefix


def export_travel(user, out):
    out.json(
        "travel",
        {
            "price_watches": rows(PriceWatch.objects.filter(owner=user), exclude=("owner",)),
            "price_points": rows(PricePoint.objects.filter(watch__owner=user)),
        },
        description="Your flight price watches (routes, dates, passengers) and the prices found.",
    )


def stop_watches(user, report):
    n = 0
    live = (PriceWatch.Status.ACTIVE, PriceWatch.Status.PAUSED)
    for pk in PriceWatch.objects.filter(owner=user, status__in=live).values_list("pk", flat=True):
        n += transition(PriceWatch, pk, PriceWatch.Status.CANCELLED)
    report.count("travel.PriceWatch.cancelled", n)


def erase_travel(user, report):
    report.count("integrations.Alert.redacted", _redact_price_drop_alerts(user))
    report.count("travel.PricePoint", PricePoint.objects.filter(watch__owner=user).delete()[0])
    report.count("travel.PriceWatch", PriceWatch.objects.filter(owner=user).delete()[0])


def _redact_price_drop_alerts(user, batch=200):
    """A price-drop alert (travel.services.watches) describes the trip: route and dates. The alert stays for
    staff; the trip goes."""
    redacted = 0
    pks = list(PriceWatch.objects.filter(owner=user).values_list("pk", flat=True))
    for i in range(0, len(pks), batch):
        of_watches = Q()
        for pk in pks[i : i + batch]:
            of_watches |= Q(dedupe_key__startswith=price_drop_alert_prefix(pk))
        redacted += Alert.objects.filter(of_watches, kind=Alert.Kind.PRICE_DROP).update(
            message="A price watch of a user since erased found a lower price."
        )
    return redacted


register(
    PrivacyHolder(
        app="travel",
        models=("travel.PriceWatch", "travel.PricePoint"),
        export=export_travel,
        erase=erase_travel,
        disconnect=stop_watches,
        description="Flight price watches and their price history (searches themselves are not stored).",
        retention="until cancelled and erased.",
    )
)
