"""Price watches and their price history. Searches themselves are not rows:
each is a ProviderCall (integrations) and a cache entry (travel.services.search)."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class PriceWatch(models.Model):
    """A route and dates (or a range of departure dates) searched again on a schedule."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        EXPIRED = "expired"  # the last departure date has passed: nothing left to watch
        CANCELLED = "cancelled"

    TRANSITIONS = {
        Status.ACTIVE: {Status.PAUSED, Status.EXPIRED, Status.CANCELLED},
        Status.PAUSED: {Status.ACTIVE, Status.EXPIRED, Status.CANCELLED},
        Status.EXPIRED: set(),
        Status.CANCELLED: set(),
    }

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="price_watches")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    origin = models.CharField(max_length=3)
    destination = models.CharField(max_length=3)
    # Fixed dates: departure_date (+ return_date). A range: every date from departure_date to
    # departure_date_to is searched in turn (one search per check), optionally returning `nights` later.
    departure_date = models.DateField()
    departure_date_to = models.DateField(null=True, blank=True)
    return_date = models.DateField(null=True, blank=True)
    nights = models.PositiveSmallIntegerField(null=True, blank=True)
    adults = models.PositiveSmallIntegerField(default=1)
    child_ages = models.JSONField(default=list, blank=True)
    infants = models.PositiveSmallIntegerField(default=0)
    cabin_class = models.CharField(max_length=16, default="economy")
    max_connections = models.PositiveSmallIntegerField(null=True, blank=True)
    include_airlines = models.JSONField(default=list, blank=True)
    exclude_airlines = models.JSONField(default=list, blank=True)
    # Target price in the offers' currency; without one, any drop of drop_percent notifies.
    target_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    drop_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    # The watch's current price: the cheapest of the latest price seen for each watched date.
    last_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # The price the owner was last told about (or the first price seen): drops are measured from it.
    reference_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # The check whose price became reference_price: once a date of the range departs, the reference is the
    # watch's price at that check without the departed dates (a price nobody can buy any more measures nothing).
    reference_point = models.ForeignKey(
        "PricePoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_notified_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(db_index=True)
    # Which date of a range the next check searches (round robin).
    next_date_index = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "price watches"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["next_check_at"], condition=Q(status="active"), name="travel_watch_due_idx"),
        ]

    def __str__(self):
        return f"{self.origin}-{self.destination} {self.departure_date} ({self.status})"

    def watched_dates(self):
        """Departure dates this watch searches, in order."""
        from datetime import timedelta

        last = self.departure_date_to or self.departure_date
        return [self.departure_date + timedelta(days=n) for n in range((last - self.departure_date).days + 1)]

    @property
    def last_departure(self):
        return self.departure_date_to or self.departure_date


class PricePoint(models.Model):
    """One check of a watch: the cheapest matching offer for one departure date."""

    watch = models.ForeignKey(PriceWatch, on_delete=models.CASCADE, related_name="points")
    checked_at = models.DateTimeField()
    departure_date = models.DateField()
    # Null when the search found no matching offer.
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    offer_id = models.CharField(max_length=64, blank=True)
    airline = models.CharField(max_length=3, blank=True)
    offer_count = models.PositiveIntegerField(default=0)
    notified = models.BooleanField(default=False)
    # When the owner's email about this drop went out: a redelivered notice task sends nothing twice.
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["checked_at", "id"]
        indexes = [models.Index(fields=["watch", "checked_at"], name="travel_point_watch_idx")]

    def __str__(self):
        return f"{self.watch_id} {self.departure_date} {self.price} {self.currency} at {self.checked_at:%Y-%m-%d %H:%M}"
