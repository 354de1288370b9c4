"""Template filters and the overview tag of the staff console (see integrations.admin)."""

from django import template

from .. import admin_charts, admin_console, admin_format

register = template.Library()


@register.filter
def usd(value):
    return admin_format.usd(value)


@register.filter
def usd_total(value):
    return admin_format.usd(value, total=True)


@register.filter
def latency_ms(value):
    return admin_format.latency(value)


@register.filter
def percent(value):
    return admin_format.percent(value)


@register.filter
def count(value):
    return admin_format.count(value)


@register.filter
def when(value):
    return admin_format.when(value)


@register.filter
def minor_units(amount, currency):
    return admin_format.minor_units(amount, currency)


@register.simple_tag
def calls_url(**params):
    from ..admin import calls_url as url

    return url(**params)


@register.simple_tag(takes_context=True)
def may_view(context, label):
    """Whether the staff member may open the admin list of `label` ("app.model"), as that page asks (admin_view
    checks only is_staff): its ModelAdmin's view permission, which a superuser and the change permission imply."""
    from django.apps import apps
    from django.contrib import admin

    model_admin = admin.site._registry.get(apps.get_model(label))
    return model_admin is not None and model_admin.has_view_permission(context["request"])


@register.inclusion_tag("admin/integrations/overview.html", takes_context=True)
def console_overview(context):
    """The overview on the admin index: per provider for the chosen window, totals, charts, what needs a look."""
    from ..models import Alert, WebhookEvent

    request = context["request"]
    user = request.user
    # Each part for staff who may view its records, as their own pages ask (admin_view checks only is_staff): the
    # call log's figures and cost, the alerts, the failed webhooks, and each outbox kind's rows.
    out = {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "can_view_calls": user.has_perm("integrations.view_providercall"),
        "can_view_alerts": user.has_perm("integrations.view_alert"),
        "can_view_webhooks": user.has_perm("integrations.view_webhookevent"),
        "outbox": _outbox_rows(user),
    }
    if out["can_view_calls"]:
        window = admin_console.window_key(request.GET.get("window"))
        cells = admin_console.window_cells(window)
        chart_window = admin_console.chart_window(window)
        chart_cells = cells if chart_window == window else admin_console.window_cells(chart_window)
        label = admin_console.WINDOWS[chart_window][0]
        out |= {
            "can_switch_circuits": user.has_perm("integrations.change_providercall"),
            "overview": admin_console.overview(window=window, cells=cells),
            "windows": [(key, text) for key, (text, _) in admin_console.WINDOWS.items()],
            "charts": [
                admin_charts.chart_calls(admin_console.series_calls(window, data=chart_cells), label),
                admin_charts.chart_latency(admin_console.series_latency(window, data=chart_cells), label),
            ],
        }
    if out["can_view_alerts"]:
        out["open_alerts"] = list(Alert.objects.filter(resolved_at__isnull=True).order_by("-created_at")[:8])
        out["open_alert_count"] = Alert.objects.filter(resolved_at__isnull=True).count()
    if out["can_view_webhooks"]:
        out["failed_webhooks"] = list(
            WebhookEvent.objects.filter(status=WebhookEvent.Status.FAILED).order_by("-received_at")[:8]
        )
    return out


def _outbox_rows(user):
    """The task outbox per kind the user may view: rows whose task is pending, overdue (the next sweep sends it) or
    stuck."""
    from django.urls import NoReverseMatch, reverse

    from .. import outbox

    rows = []
    for count in outbox.outbox_counts():
        app_label, model_name = count.label.split(".")
        if not user.has_perm(f"{app_label}.view_{model_name}"):
            continue
        try:
            link = reverse(f"admin:{app_label}_{model_name}_changelist") + "?next_attempt_at__isnull=False"
        except NoReverseMatch:
            link = ""
        rows.append({"count": count, "link": link})
    return rows
