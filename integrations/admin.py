"""The staff console in Django admin: overview, money, charts, triage lists and the append-only records.

The overview sits on the admin index (templates/admin/index.html renders
`console_overview`); the money page and the charts are views of the call
log's admin. Calls, roll-ups and webhook events are evidence: no add, no
change, no delete. Alerts are only acknowledged or resolved. Every staff
action (circuit open/close, replay, acknowledge, resolve) writes a LogEntry,
so "Recent actions" says who did what.
"""

import datetime as dt
import json

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Max, Min, QuerySet
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import urlencode

from . import admin_charts, admin_console, breaker
from .admin_format import error_meaning, latency, usd, when
from .alerts import alert_resolve
from .audit.mixins import AuditedAdminMixin
from .audit.services import audit_record
from .models import Alert, Budget, ProviderCall, ProviderRollup, UsageRollup
from .registry import all_providers
from .units import UNITS
from .usage import FAILURE_OUTCOMES

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


@admin.register(ProviderCall)
class ProviderCallAdmin(AppendOnlyAdmin):
    list_display = [
        "time",
        "provider",
        "operation",
        "outcome_badge",
        "http",
        "error_code_short",
        "error_short",
        "latency",
        "cost",
        "owner",
    ]
    list_display_links = ["time", "operation"]
    list_filter = [ProviderFilter, OutcomeFilter, SinceFilter]
    date_hierarchy = "created_at"  # periods from MIN/MAX: see CalendarQuerySet
    search_fields = [
        "=provider_request_id",
        "=request_id",
        "=idempotency_key",
        "=related_id",
        "=owner__username",
        "=error_code",
        "error_message",
    ]
    search_help_text = "Provider request id, hub request id, owner's username, error code, or words of the error."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    list_select_related = ["owner"]
    ordering = ["-created_at"]
    fieldsets = [
        (None, {"fields": ["time", "provider", "operation", "outcome", "attempt", "owner_link"]}),
        ("Result", {"fields": ["http_status", "error_code", "error_meaning", "error_message", "retryable"]}),
        ("Cost and units", {"fields": ["latency", "cost", "units_table"]}),
        ("Identifiers", {"fields": ["provider_request_id", "request_id", "idempotency_key", "related", "scope"]}),
    ]
    readonly_fields = [
        "time",
        "owner_link",
        "error_meaning",
        "latency",
        "cost",
        "units_table",
        "related",
    ]
    actions = None

    def get_queryset(self, request):
        calls = super().get_queryset(request)
        calls.__class__ = CalendarQuerySet
        return calls

    def lookup_allowed(self, lookup, value, request=None):
        # "All calls of this owner" links (money page, call detail): no filter lists every user.
        return lookup in ("owner__id__exact", "owner__id") or super().lookup_allowed(lookup, value, request)

    @admin.display(description="time", ordering="created_at")
    def time(self, obj):
        return when(obj.created_at)

    @admin.display(description="HTTP", ordering="http_status")
    def http(self, obj):
        return obj.http_status or "—"

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj):
        return format_html('<span class="console-outcome console-outcome-{}">{}</span>', obj.outcome, obj.outcome)

    @admin.display(description="code", ordering="error_code")
    def error_code_short(self, obj):
        if not obj.error_code:
            return ""
        meaning = error_meaning(obj.provider, obj.error_code)
        return format_html('<span class="console-clip" title="{}">{}</span>', meaning or obj.error_code, obj.error_code)

    @admin.display(description="error")
    def error_short(self, obj):
        if not obj.error_message:
            return ""
        text = obj.error_message if len(obj.error_message) <= 60 else obj.error_message[:59] + "…"
        return format_html('<span class="console-clip" title="{}">{}</span>', obj.error_message[:500], text)

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj):
        return latency(obj.latency_ms)

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj):
        return usd(obj.cost_usd)

    @admin.display(description="what the code means")
    def error_meaning(self, obj):
        return error_meaning(obj.provider, obj.error_code) or "—"

    @admin.display(description="owner")
    def owner_link(self, obj):
        if obj.owner_id is None:
            return "—"
        return format_html('{} · <a href="{}">all their calls</a>', obj.owner, calls_url(owner__id__exact=obj.owner_id))

    @admin.display(description="units")
    def units_table(self, obj):
        if not obj.units:
            return "—"
        return format_html("<pre>{}</pre>", json.dumps(obj.units, indent=2, sort_keys=True))

    @admin.display(description="related object")
    def related(self, obj):
        if not obj.related_type:
            return "—"
        return format_html(
            '{} #{} · <a href="{}">calls for it</a>',
            obj.related_type,
            obj.related_id,
            calls_url(q=obj.related_id),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("dashboard/", view(self.dashboard_redirect), name="integrations_dashboard"),
            path("money/", view(self.money_view), name="integrations_money"),
            path("circuit/", view(self.circuit_view), name="integrations_circuit"),
            path("charts/<str:name>.svg", view(self.chart_view), name="integrations_chart"),
            *super().get_urls(),
        ]

    def dashboard_redirect(self, request):
        """The old dashboard's address: the overview is on the admin index now."""
        return HttpResponseRedirect(reverse("admin:index"))

    def circuit_view(self, request):
        """POST provider=<name>&action=open|close: trip or close a breaker by hand, logged."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("integrations.view_providercall"):
            raise Http404
        name, action = request.POST.get("provider"), request.POST.get("action")
        if name not in {p.name for p in all_providers()} or action not in ("open", "close"):
            messages.error(request, "Unknown provider or action.")
        elif action == "close":
            breaker.reset(name)
            log_staff_action(request, f"Closed the circuit for {name} by hand.", repr_=f"Circuit {name}")
            audit_record(action="circuit.close", request=request, target=("provider", name))
            messages.success(request, f"Closed the circuit for {name}.")
        else:
            breaker.trip(name)
            log_staff_action(request, f"Opened the circuit for {name} by hand.", repr_=f"Circuit {name}")
            audit_record(action="circuit.open", request=request, target=("provider", name))
            messages.success(request, f"Opened the circuit for {name}: calls to it fail fast until it closes.")
        back = request.POST.get("next") or ""
        return HttpResponseRedirect(back if back.startswith("/admin/") else reverse("admin:index"))

    def money_view(self, request):
        data = admin_console.money(month=request.GET.get("month"))
        cost = admin_console.series_cost("30d")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Money · {data['month_label']}",
            "money": data,
            "cost_chart": admin_charts.chart_cost(cost, "last 30 days"),
            "units": UNITS,
        }
        return TemplateResponse(request, "admin/integrations/money.html", context)

    def chart_view(self, request, name):
        window = admin_console.chart_window(request.GET.get("window") or ("30d" if name == "cost" else None))
        label = admin_console.WINDOWS[window][0]
        if name == "calls":
            svg = admin_charts.chart_calls(admin_console.series_calls(window), label)
        elif name == "cost":
            svg = admin_charts.chart_cost(admin_console.series_cost(window), label)
        elif name == "latency":
            svg = admin_charts.chart_latency(admin_console.series_latency(window), label)
        else:
            raise Http404
        return HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")


def alert_source_url(alert):
    """Where what raised the alert can be seen: the calls, the failed webhooks, the money page."""
    kind = alert.kind
    if kind == Alert.Kind.WEBHOOK_FAILED:
        parts = alert.dedupe_key.split(":", 2)
        params = {"status__exact": "failed", "provider__exact": alert.provider}
        if len(parts) == 3 and parts[2]:
            params["type__exact"] = parts[2]
        return f"{reverse('admin:integrations_webhookevent_changelist')}?{urlencode(params)}", "the failed webhooks"
    if kind == Alert.Kind.BUDGET_THRESHOLD:
        return reverse("admin:integrations_money"), "this month's spend"
    if alert.provider:
        return calls_url(provider=alert.provider, outcome=OutcomeFilter.FAILED), f"{alert.provider}'s failed calls"
    return calls_url(outcome=OutcomeFilter.FAILED), "failed calls"


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("unacknowledged", "Open, not acknowledged"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "unacknowledged":
            return queryset.filter(resolved_at__isnull=True, acknowledged_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(AppendOnlyAdmin):
    list_display = ["time", "severity", "kind", "provider", "message_short", "occurrences", "state", "source"]
    list_filter = [OpenFilter, "kind", "severity", "provider"]
    search_fields = ["message", "dedupe_key"]
    fields = [
        "time",
        "kind",
        "severity",
        "provider",
        "message",
        "occurrences",
        "last_seen",
        "state",
        "source",
        "dedupe_key",
    ]
    readonly_fields = fields
    actions = ["acknowledge_selected", "resolve_selected"]
    change_form_template = "admin/integrations/alert/change_form.html"

    def has_alert_action_permission(self, request):
        return request.user.has_perm("integrations.change_alert")

    @admin.display(description="raised", ordering="created_at")
    def time(self, obj):
        return when(obj.created_at)

    @admin.display(description="last seen")
    def last_seen(self, obj):
        return when(obj.last_seen_at)

    @admin.display(description="message")
    def message_short(self, obj):
        text = obj.message if len(obj.message) <= 90 else obj.message[:89] + "…"
        return format_html('<span class="console-clip" title="{}">{}</span>', obj.message[:500], text)

    @admin.display(description="state")
    def state(self, obj):
        if obj.resolved_at:
            who = f" by {obj.resolved_by}" if obj.resolved_by_id else ""
            return format_html("resolved {}{}", when(obj.resolved_at), who)
        if obj.acknowledged_at:
            return format_html("acknowledged by {} {}", obj.acknowledged_by or "someone", when(obj.acknowledged_at))
        return "open"

    @admin.display(description="raised by")
    def source(self, obj):
        url, label = alert_source_url(obj)
        return format_html('<a href="{}">{}</a>', url, label)

    def _acknowledge(self, request, alert):
        updated = Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True, acknowledged_at__isnull=True).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )
        if updated:
            log_staff_action(request, "Acknowledged.", alert)
            audit_record(action="alert.acknowledge", request=request, target=alert)
        return updated

    def _resolve(self, request, alert):
        if alert.resolved_at is not None:
            return 0
        alert_resolve(alert=alert, by=request.user)
        updated = int(alert.resolved_by_id == request.user.pk)
        if updated:
            log_staff_action(request, "Resolved.", alert)
            audit_record(action="alert.resolve", request=request, target=alert)
        return updated

    @admin.action(description="Acknowledge selected alerts", permissions=["alert_action"])
    def acknowledge_selected(self, request, queryset):
        count = sum(self._acknowledge(request, a) for a in queryset)
        messages.success(request, f"Acknowledged {count} alert(s).")

    @admin.action(description="Resolve selected alerts", permissions=["alert_action"])
    def resolve_selected(self, request, queryset):
        count = sum(self._resolve(request, a) for a in queryset)
        messages.success(request, f"Resolved {count} alert(s).")

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/act/", view(self.act_view), name="integrations_alert_act"),
            *super().get_urls(),
        ]

    def act_view(self, request, pk):
        """The Acknowledge / Resolve buttons of an alert's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_alert_action_permission(request):
            raise Http404
        alert = Alert.objects.filter(pk=pk).first()
        if alert is None:
            raise Http404
        action = request.POST.get("action")
        if action == "acknowledge" and self._acknowledge(request, alert):
            messages.success(request, "Alert acknowledged.")
        elif action == "resolve" and self._resolve(request, alert):
            messages.success(request, "Alert resolved.")
        else:
            messages.warning(request, "Nothing to do: the alert was already acknowledged or resolved.")
        return HttpResponseRedirect(reverse("admin:integrations_alert_change", args=[pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"can_act": self.has_alert_action_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)


@admin.register(Budget)
class BudgetAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["provider", "owner", "limit"]
    list_filter = ["provider"]
    raw_id_fields = ["owner"]

    @admin.display(description="monthly limit", ordering="monthly_limit_usd")
    def limit(self, obj):
        return usd(obj.monthly_limit_usd, total=True)


class _RollupAdmin(AppendOnlyAdmin):
    list_filter = ["provider", ("hour", admin.DateFieldListFilter)]
    show_full_result_count = False
    date_hierarchy = None

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj):
        return usd(obj.cost_usd)

    @admin.display(description="units")
    def units(self, obj):
        parts = [f"{u.label}: {getattr(obj, u.column):,}" for u in UNITS if getattr(obj, u.column)]
        return "; ".join(parts) or "—"


@admin.register(UsageRollup)
class UsageRollupAdmin(_RollupAdmin):
    list_display = ["hour", "provider", "owner", "calls", "errors", "units", "cost"]
    list_select_related = ["owner"]
    exclude = []


@admin.register(ProviderRollup)
class ProviderRollupAdmin(_RollupAdmin):
    list_display = ["hour", "provider", "calls", "ok", "error", "rate_limited", "timeout", "units", "cost"]


# The webhook inbox's and credentials' ModelAdmins live beside their code; importing registers them.
# API tokens (issue 17): registered here so admin autodiscovery finds them.
# Operations (issue 14): alert channels and deliveries, retention runs, audit archives.
from . import ops_admin as _ops_admin  # noqa: E402,F401
from .auth import admin as _token_admin  # noqa: E402,F401
from .connections_admin import ConnectionAdmin  # noqa: E402,F401
from .webhooks.admin import WebhookEventAdmin  # noqa: E402,F401
