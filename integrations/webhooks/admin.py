from django.contrib import admin, messages
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from ..admin_format import clipped, pretty_json, when
from ..audit.models import AuditEvent
from ..audit.services import audit_record
from ..models import WebhookEvent
from .processing import WebhookReplayRefused, webhook_mark_ignored, webhook_replay

# Values in a provider's payload that let whoever reads them act: a PaymentIntent's client_secret confirms it from a
# browser (Stripe: never for anyone but its customer). The page shows them redacted; the row keeps them for a replay.
HIDDEN_KEYS = {"client_secret"}


class WebhookSinceFilter(admin.SimpleListFilter):
    title = "received"
    parameter_name = "since"

    def lookups(self, request, model_admin):
        from ..admin_console import WINDOWS

        return [(key, label.capitalize()) for key, (label, _) in WINDOWS.items()]

    def queryset(self, request, queryset):
        from ..admin_console import WINDOWS, window_since

        if self.value() in WINDOWS:
            return queryset.filter(received_at__gte=window_since(self.value()))
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    """Events are evidence of what a provider sent: staff replay or ignore them, never add, edit or delete."""

    list_display = (
        "received",
        "provider",
        "type",
        "event_id_short",
        "status",
        "error_short",
        "attempts",
        "next_attempt",
        "signature_verified",
    )
    list_display_links = ("received", "event_id_short")
    list_filter = ("status", "provider", WebhookSinceFilter, "type")
    search_fields = ("=event_id", "last_error")
    search_help_text = "The provider's event id, or words of the last error."
    date_hierarchy = "received_at"
    ordering = ("-received_at",)
    show_full_result_count = False  # COUNT(*) over the whole inbox is slow on a big table
    list_per_page = 100
    actions = ("replay", "mark_ignored")
    change_form_template = "admin/integrations/webhookevent/change_form.html"
    fields = (
        ("provider", "type", "event_id"),
        ("status", "attempts", "signature_verified"),
        ("received", "occurred", "processed", "next_attempt"),
        "last_error",
        ("follow_ups", "follow_ups_due_at"),
        "pretty_headers",
        "pretty_payload",
    )
    readonly_fields = (
        "provider",
        "type",
        "event_id",
        "status",
        "attempts",
        "signature_verified",
        "received",
        "occurred",
        "processed",
        "next_attempt",
        "last_error",
        "follow_ups",
        "follow_ups_due_at",
        "pretty_headers",
        "pretty_payload",
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_replay_permission(self, request):
        return request.user.has_perm("integrations.change_webhookevent")

    @admin.display(description="received", ordering="received_at")
    def received(self, obj):
        return when(obj.received_at)

    @admin.display(description="occurred (provider's time)")
    def occurred(self, obj):
        return when(obj.occurred_at)

    @admin.display(description="processed")
    def processed(self, obj):
        return when(obj.processed_at)

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        return when(obj.next_attempt_at) if obj.next_attempt_at else "—"

    @admin.display(description="event id", ordering="event_id")
    def event_id_short(self, obj):
        return format_html('<span class="console-clip" title="{}">{}</span>', obj.event_id, obj.event_id)

    @admin.display(description="error")
    def error_short(self, obj):
        return clipped(obj.last_error)

    @admin.display(description="Payload")
    def pretty_payload(self, obj):
        return pretty_json(obj.payload, hidden=HIDDEN_KEYS)

    @admin.display(description="Headers")
    def pretty_headers(self, obj):
        return pretty_json(obj.headers)

    def _replay(self, request, event):
        from ..admin import log_staff_action

        try:
            webhook_replay(event=event)
        except WebhookReplayRefused as exc:
            # Refused, as a refund the service refuses: in the trail with outcome denied (README, audit trail).
            audit_record(
                action="webhook.replay",
                request=request,
                target=event,
                outcome=AuditEvent.Outcome.DENIED,
                provider=event.provider,
                error="replay_refused",
            )
            self.message_user(request, str(exc), messages.ERROR)
            return False
        log_staff_action(request, "Replayed.", event)
        audit_record(action="webhook.replay", request=request, target=event, provider=event.provider)
        return True

    @admin.action(description="Replay selected events", permissions=["replay"])
    def replay(self, request, queryset):
        count = 0
        for event in queryset:
            count += self._replay(request, event)
        self.message_user(request, f"{count} event(s) queued for processing again.", messages.SUCCESS)

    @admin.action(description="Mark selected events ignored", permissions=["replay"])
    def mark_ignored(self, request, queryset):
        from ..admin import log_staff_action
        from ..alerts import webhook_alert_resolve_if_clear

        count = 0
        kinds = set()
        for event in queryset:
            if webhook_mark_ignored(event=event, reason=f"Marked ignored by {request.user}."):
                log_staff_action(request, "Marked ignored.", event)
                audit_record(action="webhook.ignore", request=request, target=event, provider=event.provider)
                count += 1
                kinds.add((event.provider, event.type))
        # The webhook_failed alert asks staff to replay its failed events: once the last of its kind is dismissed
        # instead, nothing is left to replay and it is resolved, as after a replay that succeeds.
        for provider, event_type in sorted(kinds):
            webhook_alert_resolve_if_clear(provider=provider, event_type=event_type)
        self.message_user(request, f"{count} event(s) marked ignored (processed events are left as they are).")

    def get_urls(self):
        return [
            path(
                "<int:pk>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="integrations_webhookevent_replay",
            ),
            *super().get_urls(),
        ]

    def replay_view(self, request, pk):
        """The Replay button of an event's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_replay_permission(request):
            raise Http404
        event = WebhookEvent.objects.filter(pk=pk).first()
        if event is None:
            raise Http404
        if not self._replay(request, event):
            return HttpResponseRedirect(reverse("admin:integrations_webhookevent_change", args=[pk]))
        event.refresh_from_db()
        if event.status == WebhookEvent.Status.PROCESSED:
            self.message_user(request, "Replayed: the event was processed.", messages.SUCCESS)
        else:
            self.message_user(request, f"Replay queued: the event is {event.status} now.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:integrations_webhookevent_change", args=[pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"can_replay": self.has_replay_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)
