import json

from django.contrib import admin, messages
from django.utils.html import format_html

from ..models import WebhookEvent
from .processing import webhook_mark_ignored, webhook_replay


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("received_at", "provider", "type", "event_id", "status", "attempts", "signature_verified")
    list_filter = ("provider", "status", "type")
    search_fields = ("=event_id",)
    date_hierarchy = "received_at"
    ordering = ("-received_at",)
    show_full_result_count = False  # COUNT(*) over the whole inbox is slow on a big table
    list_per_page = 100
    actions = ("replay", "mark_ignored")
    # Events are evidence of what a provider sent: staff replay or ignore them, never edit.
    fields = (
        ("provider", "type", "event_id"),
        ("status", "attempts", "signature_verified"),
        ("received_at", "occurred_at", "processed_at", "next_attempt_at"),
        "last_error",
        "pretty_headers",
        "pretty_payload",
    )
    readonly_fields = fields[0] + fields[1] + fields[2] + ("last_error", "pretty_headers", "pretty_payload")

    def has_add_permission(self, request):
        return False

    @admin.display(description="Payload")
    def pretty_payload(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.display(description="Headers")
    def pretty_headers(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=2, sort_keys=True))

    @admin.action(description="Replay selected events", permissions=["change"])
    def replay(self, request, queryset):
        count = 0
        for event in queryset:
            webhook_replay(event=event)
            count += 1
        self.message_user(request, f"{count} event(s) queued for processing again.", messages.SUCCESS)

    @admin.action(description="Mark selected events ignored", permissions=["change"])
    def mark_ignored(self, request, queryset):
        count = sum(
            webhook_mark_ignored(event=event, reason=f"Marked ignored by {request.user}.") for event in queryset
        )
        self.message_user(request, f"{count} event(s) marked ignored (processed events are left as they are).")
