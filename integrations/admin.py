import datetime as dt

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Max, Min, QuerySet
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.functional import cached_property

from . import breaker
from .models import Alert, Budget, ProviderCall, UsageRollup
from .registry import all_providers
from .usage import dashboard_rows


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


@admin.register(ProviderCall)
class ProviderCallAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "provider",
        "operation",
        "outcome",
        "http_status",
        "latency_ms",
        "attempt",
        "cost_usd",
        "owner",
    ]
    list_filter = [ProviderFilter, "outcome", ("created_at", admin.DateFieldListFilter)]
    date_hierarchy = "created_at"  # periods from MIN/MAX: see CalendarQuerySet
    search_fields = ["=provider_request_id", "=idempotency_key", "=related_id", "=request_id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    ordering = ["-created_at"]

    def get_queryset(self, request):
        calls = super().get_queryset(request)
        calls.__class__ = CalendarQuerySet
        return calls

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_urls(self):
        dashboard = path("dashboard/", self.admin_site.admin_view(self.dashboard_view), name="integrations_dashboard")
        return [dashboard, *super().get_urls()]

    def dashboard_view(self, request):
        """Per provider, last 24 h: calls, error rate, p95 latency, cost; open alerts; failed webhooks.

        POST `close_circuit=<provider>` closes a breaker by hand (after a provider's outage is over).
        """
        if request.method == "POST" and request.POST.get("close_circuit"):
            name = request.POST["close_circuit"]
            if name in {p.name for p in all_providers()}:
                breaker.reset(name)
                messages.success(request, f"Closed the circuit for {name}.")
            return HttpResponseRedirect(request.path)
        stats = {r["provider"]: r for r in dashboard_rows(hours=24)}
        providers = [{"spec": p, "circuit": breaker.state(p.name), "stats": stats.get(p.name)} for p in all_providers()]
        context = {
            **self.admin_site.each_context(request),
            "title": "Provider dashboard (last 24 h)",
            "providers": providers,
            "alerts": Alert.objects.filter(resolved_at__isnull=True)[:50],
            "failed_webhooks": _failed_webhooks(),
            "now": timezone.now(),
        }
        return TemplateResponse(request, "admin/integrations/dashboard.html", context)


def _failed_webhooks():
    from . import models

    WebhookEvent = getattr(models, "WebhookEvent", None)
    if WebhookEvent is None:
        return []
    return WebhookEvent.objects.filter(status="failed").order_by("-received_at")[:20]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "severity",
        "kind",
        "provider",
        "message",
        "occurrences",
        "last_seen_at",
        "resolved_at",
    ]
    list_filter = ["kind", "severity", "provider", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["message", "dedupe_key"]
    readonly_fields = [
        "kind",
        "severity",
        "provider",
        "message",
        "dedupe_key",
        "occurrences",
        "created_at",
        "last_seen_at",
    ]
    actions = ["resolve"]

    @admin.action(description="Resolve selected alerts")
    def resolve(self, request, queryset):
        count = queryset.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())
        messages.success(request, f"Resolved {count} alert(s).")


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["provider", "owner", "monthly_limit_usd"]
    list_filter = ["provider"]
    raw_id_fields = ["owner"]


@admin.register(UsageRollup)
class UsageRollupAdmin(admin.ModelAdmin):
    list_display = ["hour", "provider", "owner", "calls", "errors", "units", "cost_usd"]
    list_filter = ["provider", ("hour", admin.DateFieldListFilter)]
    show_full_result_count = False
    raw_id_fields = ["owner"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# The webhook inbox's and credentials' ModelAdmins live beside their code; importing registers them.
# API tokens (issue 17): registered here so admin autodiscovery finds them.
from .auth import admin as _token_admin  # noqa: E402,F401
from .connections_admin import ConnectionAdmin  # noqa: E402,F401
from .webhooks.admin import WebhookEventAdmin  # noqa: E402,F401
