"""Staff views of messages, calls (with recordings and transcripts), opt-outs, hours and forwarding.

Messages and calls are records of what Twilio did: read-only, with actions
for what staff may repair (re-queue a failed send, give an unattributed reply
to the user it was meant for).
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.template.response import TemplateResponse
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


class _AssignForm(forms.Form):
    """The user to give the messages to: only one who has a conversation with their sender."""

    owner = forms.ModelChoiceField(queryset=get_user_model().objects.none())

    def __init__(self, *args, candidates, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = get_user_model().objects.filter(pk__in=[c.owner_id for c in candidates])


@admin.register(SmsMessage)
class SmsMessageAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "direction",
        "to_number",
        "from_number",
        "status",
        "segments",
        "num_media",
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
    actions = ["requeue_failed", "assign_unattributed"]

    def has_assign_permission(self, request):
        # The admin is read-only (no change form), but giving a message away is a change to it.
        return request.user.has_perm("messaging.change_smsmessage")

    def has_requeue_permission(self, request):
        # Read-only too, and sending again is a change: staff who may only view messages do not get the action.
        return request.user.has_perm("messaging.change_smsmessage")

    @admin.action(description="Send failed outbound messages again (never sent by Twilio)", permissions=["requeue"])
    def requeue_failed(self, request, queryset):
        never_sent = queryset.filter(direction="outbound", status="failed", external_id__isnull=True)
        done = each_row(self, request, never_sent, lambda sms: services.sms_requeue(sms_id=sms.pk))
        self.message_user(request, f"{done} message(s) queued again.", messages.SUCCESS)

    @admin.action(
        description="Assign unattributed inbound messages to a user who talks with the sender",
        permissions=["assign"],
    )
    def assign_unattributed(self, request, queryset):
        """A choice page listing only the users who talk with the sender; on its submit, the service per message."""
        rows = list(queryset.order_by("created_at", "id"))
        applying = "apply" in request.POST
        if not applying:
            taken = [str(sms.pk) for sms in rows if (sms.direction, sms.status) != ("inbound", "unattributed")]
            if taken:
                self.message_user(
                    request,
                    f"Only unattributed inbound messages can be assigned; SMS {', '.join(taken)} is not one "
                    "(already assigned, or never unattributed). Select only those. Nothing was changed.",
                    messages.ERROR,
                )
                return None
        senders = sorted({sms.from_number for sms in rows})
        if len(senders) != 1:
            self.message_user(
                request,
                f"Select messages from one sender at a time (these came from {', '.join(senders)}). "
                "Nothing was changed.",
                messages.ERROR,
            )
            return None
        candidates = list(services.sms_unattributed_candidates(sms=rows[0]))
        form = _AssignForm(request.POST if applying else None, candidates=candidates)
        if applying:
            if form.is_valid():
                owner = form.cleaned_data["owner"]
                done = each_row(
                    self,
                    request,
                    rows,
                    lambda sms: services.sms_unattributed_assign(sms_id=sms.pk, owner=owner),
                    assigned_to=owner.pk,
                )
                if done:
                    self.message_user(request, f"{done} message(s) assigned to {owner}.", messages.SUCCESS)
                else:
                    self.message_user(request, "No message was assigned.", messages.ERROR)
                return None
            self.message_user(
                request,
                f"That user has no conversation with {senders[0]}: choose one of the users listed. "
                "Nothing was changed.",
                messages.ERROR,
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Assign unattributed messages",
            "opts": self.model._meta,
            "rows": rows,
            "sender": senders[0],
            "candidates": candidates,
            "action": "assign_unattributed",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/messaging/smsmessage/assign_unattributed.html", context)


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
