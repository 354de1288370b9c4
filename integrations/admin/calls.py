"""The call log's admin: the list of ProviderCalls, the circuit actions, and the money page and charts
served as its views.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from .. import admin_charts, admin_console, breaker
from ..admin_format import clipped, error_meaning, latency, pretty_json, usd, when
from ..audit.services import audit_record
from ..models import ProviderCall
from ..registry import all_providers
from ..units import UNITS
from .base import (
    AppendOnlyAdmin,
    CalendarQuerySet,
    EstimatedCountPaginator,
    OutcomeFilter,
    ProviderFilter,
    SinceFilter,
    calls_url,
    log_staff_action,
)


def _circuits(provider):
    """The breakers a staff member's Open / Close of `provider` acts on: its own, and for the alert webhooks each
    channel's (they fail apart, alerting.channels.circuit), so the console's switch still stops or frees them all."""
    from ..alerting.channels import PROVIDER as ALERT_HOOKS
    from ..alerting.channels import circuit
    from ..alerting.notify import configured_channels

    if provider != ALERT_HOOKS:
        return [provider]
    return [provider, *(circuit(channel) for channel in configured_channels() if channel.kind != "email")]


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
        return clipped(obj.error_message)

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
        return pretty_json(obj.units)

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
        # Calls are append-only, so their change permission means this: tripping a breaker stops every call to a
        # provider (Stripe: every payment), not for staff who may only read the call log.
        if not request.user.has_perm("integrations.change_providercall"):
            raise Http404
        name, action = request.POST.get("provider"), request.POST.get("action")
        if name not in {p.name for p in all_providers()} or action not in ("open", "close"):
            messages.error(request, "Unknown provider or action.")
        elif action == "close":
            for circuit in _circuits(name):
                breaker.reset(circuit)
            log_staff_action(request, f"Closed the circuit for {name} by hand.", repr_=f"Circuit {name}")
            audit_record(action="circuit.close", request=request, target=("provider", name))
            messages.success(request, f"Closed the circuit for {name}.")
        else:
            for circuit in _circuits(name):
                breaker.trip(circuit)
            log_staff_action(request, f"Opened the circuit for {name} by hand.", repr_=f"Circuit {name}")
            audit_record(action="circuit.open", request=request, target=("provider", name))
            messages.success(request, f"Opened the circuit for {name}: calls to it fail fast until it closes.")
        back = request.POST.get("next") or ""
        return HttpResponseRedirect(back if back.startswith("/admin/") else reverse("admin:index"))

    def money_view(self, request):
        # What each owner spent is the call log's data: for staff who may view it (admin_view checks only is_staff).
        if not self.has_view_permission(request):
            raise PermissionDenied
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
        if not self.has_view_permission(request):
            raise PermissionDenied
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
