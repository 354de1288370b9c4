"""Staff views of messages, calls (with recordings and transcripts), opt-outs, hours and forwarding.

Messages and calls are records of what Twilio did: read-only, with actions
for what staff may repair (re-queue a failed send).
"""

from django.contrib import admin, messages
from django.utils.html import format_html

from integrations.actions import each_row
from integrations.admin_format import usd

from . import services
from .models import BusinessHours, CallLog, Conversation, ForwardingRule, Holiday, OptOut, SmsMessage, WeeklyHours


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="price", ordering="price_usd")
    def price(self, obj):
        return usd(obj.price_usd) if obj.price_usd is not None else "—"


@admin.register(SmsMessage)
class SmsMessageAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "direction",
        "to_number",
        "from_number",
        "status",
        "segments",
        "price",
        "error_code",
        "owner",
    ]
    list_filter = ["direction", "status", "price_final", "send_doubt"]
    search_fields = ["=external_id", "=to_number", "=from_number"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    raw_id_fields = ["owner", "conversation"]
    show_full_result_count = False
    actions = ["requeue_failed"]

    @admin.action(description="Send failed outbound messages again (never sent by Twilio)")
    def requeue_failed(self, request, queryset):
        never_sent = queryset.filter(direction="outbound", status="failed", external_id__isnull=True)
        done = each_row(self, request, never_sent, lambda sms: services.sms_requeue(sms_id=sms.pk))
        self.message_user(request, f"{done} message(s) queued again.", messages.SUCCESS)


@admin.register(CallLog)
class CallLogAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "direction",
        "from_number",
        "to_number",
        "status",
        "routing",
        "duration_seconds",
        "price",
        "has_recording",
    ]
    list_filter = ["direction", "status", "routing", "voicemail", "send_doubt"]
    search_fields = ["=external_id", "=from_number", "=to_number"]
    date_hierarchy = "created_at"
    raw_id_fields = ["owner"]
    readonly_fields = ["recording_link"]
    show_full_result_count = False

    @admin.display(boolean=True, description="recording")
    def has_recording(self, obj):
        return bool(obj.recording_url)

    @admin.display(description="recording")
    def recording_link(self, obj):
        if not obj.recording_url:
            return "-"
        # Twilio serves recordings to the account's credentials; staff open them signed in to Twilio.
        return format_html('<a href="{}" rel="noreferrer" target="_blank">{}</a>', obj.recording_url, obj.recording_sid)


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ["remote_number", "owner", "last_message_at"]
    search_fields = ["=remote_number"]
    raw_id_fields = ["owner"]


@admin.register(OptOut)
class OptOutAdmin(admin.ModelAdmin):
    list_display = ["phone_number", "active", "keyword", "opted_out_at", "opted_in_at"]
    list_filter = ["active"]
    search_fields = ["=phone_number"]


class WeeklyHoursInline(admin.TabularInline):
    model = WeeklyHours
    extra = 0


class HolidayInline(admin.TabularInline):
    model = Holiday
    extra = 0


@admin.register(BusinessHours)
class BusinessHoursAdmin(admin.ModelAdmin):
    list_display = ["name", "time_zone", "is_active"]
    inlines = [WeeklyHoursInline, HolidayInline]


@admin.register(ForwardingRule)
class ForwardingRuleAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "priority",
        "is_active",
        "caller_prefix",
        "start_time",
        "end_time",
        "target_number",
        "ring_timeout",
        "fallback_number",
    ]
    list_editable = ["priority", "is_active"]
    list_filter = ["is_active"]
