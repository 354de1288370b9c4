"""What travel holds about a user (privacy registry): price watches and their price history."""

from integrations.states import transition
from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .models import PricePoint, PriceWatch


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
    report.count("travel.PricePoint", PricePoint.objects.filter(watch__owner=user).delete()[0])
    report.count("travel.PriceWatch", PriceWatch.objects.filter(owner=user).delete()[0])


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
