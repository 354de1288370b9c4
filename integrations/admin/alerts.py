"""Alerts in admin: open / acknowledged / resolved, a link to what raised each, and the staff actions on them."""

from django.contrib import admin, messages
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from ..admin_format import when
from ..alerts import alert_resolve
from ..audit.services import audit_record
from ..models import Alert
from .base import AppendOnlyAdmin, OutcomeFilter, calls_url, log_staff_action


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


def _audited(alert):
    """The alert as the audit trail names it: by id, not by str(alert), which quotes its message. A message can
    name a user (the lockout alert's user name and address, a document's file name), and the trail is kept for
    years and cannot be redacted at erasure as the alert itself is (integrations.privacy)."""
    return (alert._meta.label_lower, alert.pk)


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
            audit_record(action="alert.acknowledge", request=request, target=_audited(alert), kind=alert.kind)
        return updated

    def _resolve(self, request, alert):
        if alert.resolved_at is not None:
            return 0
        alert_resolve(alert=alert, by=request.user)
        updated = int(alert.resolved_by_id == request.user.pk)
        if updated:
            log_staff_action(request, "Resolved.", alert)
            audit_record(action="alert.resolve", request=request, target=_audited(alert), kind=alert.kind)
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
