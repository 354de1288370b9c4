"""What every console list shares: the staff action log line, the estimated-count paginator,
the provider / outcome / since filters, the calendar queryset, the append-only base and `calls_url`.
"""

import datetime as dt

from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Max, Min, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.http import urlencode

from .. import admin_console
from ..models import ProviderCall
from ..registry import all_providers
from ..usage import FAILURE_OUTCOMES

# The console's header links (templates/admin/base_site.html) replace the app-list sidebar, which
# would take 280 px from every list: at 1280 px the call list's ten columns fit without it.
admin.site.enable_nav_sidebar = False


def log_staff_action(request, message, obj=None, repr_=None):
    """One "Recent actions" line for a staff action; `obj` may be None (a circuit is not a row)."""
    if obj is not None:
        return LogEntry.objects.log_actions(
            user_id=request.user.pk, queryset=[obj], action_flag=CHANGE, change_message=message, single_object=True
        )
    return LogEntry.objects.create(
        user_id=request.user.pk, object_repr=(repr_ or message)[:200], action_flag=CHANGE, change_message=message
    )


class EstimatedCountPaginator(Paginator):
    """An unfiltered changelist of millions of rows must not COUNT(*) them: use PostgreSQL's estimate."""

    @cached_property
    def count(self):
        query = self.object_list.query
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [query.model._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] > 10000:
                return row[0]
        return super().count


class ProviderFilter(admin.SimpleListFilter):
    """Choices from the registry: the default filter would SELECT DISTINCT over millions of calls."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return [(p.name, p.label) for p in all_providers()]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class OutcomeFilter(admin.SimpleListFilter):
    """ "Any failure" (error, rate limited, timeout: what the overview counts as failures) or one outcome."""

    title = "outcome"
    parameter_name = "outcome"
    FAILED = "failed"

    def lookups(self, request, model_admin):
        return [(self.FAILED, "Any failure"), *ProviderCall.Outcome.choices]

    def queryset(self, request, queryset):
        if self.value() == self.FAILED:
            return queryset.filter(outcome__in=FAILURE_OUTCOMES)
        if self.value() in ProviderCall.Outcome.values:
            return queryset.filter(outcome=self.value())
        return queryset


class SinceFilter(admin.SimpleListFilter):
    """Last 1 h / 24 h / 7 d / 30 d counted back from now (not calendar days), as the overview counts."""

    title = "time"
    parameter_name = "since"

    def lookups(self, request, model_admin):
        return [(key, label.capitalize()) for key, (label, _) in admin_console.WINDOWS.items()]

    def queryset(self, request, queryset):
        if self.value() in admin_console.WINDOWS:
            return queryset.filter(created_at__gte=admin_console.window_since(self.value()))
        return queryset


class CalendarQuerySet(QuerySet):
    """The call list's queryset, for the admin date hierarchy only.

    The hierarchy asks `datetimes(field, "month"/"day")`, a SELECT DISTINCT
    date_trunc(...) over every matching row (0.3-0.5 s at a million calls).
    Here the periods come from MIN/MAX, which the created_at indexes answer
    at once, and every period in between is offered: calls happen daily, so an
    empty day is rare and simply lists nothing.
    """

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if not bounds["first"]:
            return []
        first, last = (timezone.localtime(bounds[k]) for k in ("first", "last"))
        periods, current = [], first.replace(hour=0, minute=0, second=0, microsecond=0)
        current = current.replace(day=1) if kind in ("month", "year") else current
        current = current.replace(month=1) if kind == "year" else current
        while current <= last:
            periods.append(current)
            if kind == "day":
                current = timezone.localtime(current + dt.timedelta(days=1)).replace(hour=0)
            elif kind == "month":
                current = current.replace(year=current.year + current.month // 12, month=current.month % 12 + 1)
            else:
                current = current.replace(year=current.year + 1)
        return periods if order == "ASC" else periods[::-1]


class AppendOnlyAdmin(admin.ModelAdmin):
    """Records that are evidence: staff read them, nobody adds, edits or deletes them here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def calls_url(**params):
    """The call list filtered by `params` (provider, outcome, since, q, owner__id__exact ...)."""
    base = reverse("admin:integrations_providercall_changelist")
    params = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{base}?{urlencode(params)}" if params else base
