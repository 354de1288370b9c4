"""Admin for operations (issue 14): alert channels and their deliveries, retention runs, audit archives; beat's
schedule (django-celery-beat's admin, its actions for those who may change it)."""

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django_celery_beat import admin as celery_beat_admin
from django_celery_beat.models import PeriodicTask

from .admin import AppendOnlyAdmin
from .admin_format import when
from .audit.mixins import AuditedAdminMixin
from .audit.models import AuditArchive, AuditArchiveGap
from .models import Alert, AlertChannel, AlertDelivery, RetentionRun


class AlertChannelForm(forms.ModelForm):
    # The signing secret is write-only: typed in, never shown again (blank keeps the current one).
    secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False), help_text="Webhook only. Blank keeps it."
    )
    kinds = forms.MultipleChoiceField(choices=Alert.Kind.choices, required=False, help_text="None selected: all.")

    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "target", "secret", "min_severity", "kinds", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.kind != AlertChannel.Kind.EMAIL:
            # A Slack or webhook URL is itself a credential (the list and the audit trail show only its host):
            # the page does not carry it back either. Blank keeps it; a new URL replaces it.
            target = self.fields["target"]
            target.required = False
            target.widget = forms.TextInput(
                attrs={"placeholder": f"https://{_where(self.instance.target)}/… (kept)", "size": 60}
            )
            target.help_text = "The URL is not shown again. Blank keeps it; type a new URL to replace it."
            self.initial["target"] = ""

    def clean(self):
        data = super().clean()
        if not data.get("target") and not self.fields["target"].required:  # a URL left blank: kept (__init__)
            if data.get("kind") == AlertChannel.Kind.EMAIL:
                self.add_error("target", "An email channel needs its addresses.")
            else:
                data["target"] = self.instance.target
        kind, target = data.get("kind"), data.get("target") or ""
        if kind in (AlertChannel.Kind.SLACK, AlertChannel.Kind.WEBHOOK) and not target.startswith("https://"):
            self.add_error("target", "Use an https:// URL: alerts carry operational detail.")
        if kind == AlertChannel.Kind.WEBHOOK and not (data.get("secret") or (self.instance and self.instance.secret)):
            self.add_error("secret", "A signed webhook needs a secret the receiver can verify with.")
        return data

    def save(self, commit=True):
        secret = self.cleaned_data.get("secret")
        if not secret and self.instance.pk:
            self.instance.secret = AlertChannel.objects.get(pk=self.instance.pk).secret
        return super().save(commit)


def _where(target):
    """Where a channel sends, without what makes its URL a credential: the host of a URL, an email list as is."""
    if not target or "://" not in target:
        return target
    return target.split("/")[2] if target.count("/") >= 2 else target[:20]


@admin.register(AlertChannel)
class AlertChannelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = AlertChannelForm
    audit_shown = {"target": _where}
    list_display = ["name", "kind", "target_shown", "min_severity", "kinds_shown", "enabled", "circuit"]
    list_filter = ["kind", "enabled"]
    actions = ["send_test"]

    @admin.display(description="circuit")
    def circuit(self, obj):
        # Each Slack / webhook channel has its own breaker (alerting.channels.circuit): the console's "Alerts" row
        # is the provider's, which no channel's failures open.
        from . import breaker
        from .admin_console import CIRCUIT_LABELS
        from .alerting.channels import circuit

        if obj.kind == AlertChannel.Kind.EMAIL:
            return "—"
        state = breaker.state(circuit(obj))
        return CIRCUIT_LABELS.get(state, state)

    @admin.display(description="target")
    def target_shown(self, obj):
        # A Slack URL is itself a credential: show where it goes, not the whole path.
        if obj.kind == AlertChannel.Kind.EMAIL:
            return obj.target
        return obj.target.split("/")[2] if obj.target.count("/") >= 2 else obj.target[:20]

    @admin.display(description="kinds")
    def kinds_shown(self, obj):
        return ", ".join(obj.kinds) if obj.kinds else "all"

    @admin.action(description="Send a test alert to selected channels", permissions=["change"])
    def send_test(self, request, queryset):
        from .actions import each_row
        from .alerting.notify import _deliver
        from .alerts import alert_raise, alert_test_key

        # Only the selected channels hear of it, once per click: not every channel whose floor is info, and no
        # reminder every ALERT_REMINDER_HOURS after (notify=False starts no reminder clock).
        alert = alert_raise(
            kind=Alert.Kind.OPERATIONS,
            severity=Alert.Severity.INFO,
            message=f"Test alert sent by {request.user} from the admin.",
            dedupe_key=alert_test_key(request.user.pk),
            notify=False,
        )
        # each_row writes the AuditEvent (admin.send_test) and a LogEntry per channel.
        done = each_row(
            self,
            request,
            queryset,
            lambda channel: _deliver(alert, [channel.key], AlertDelivery.Notice.OPENED, sequence=alert.occurrences),
        )
        self.message_user(request, f"{done} test notice(s) queued; see Alert deliveries.", messages.SUCCESS)


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(AppendOnlyAdmin):
    list_display = ["created", "alert", "channel_key", "notice", "status", "attempts", "detail"]
    list_filter = ["status", "notice", "channel_key"]
    list_select_related = ["alert"]
    actions = ["resend"]

    def has_resend_permission(self, request):
        # Append-only (no change form), but sending again is a change: not for staff who may only view deliveries.
        return request.user.has_perm("integrations.change_alertdelivery")

    @admin.action(description="Send selected failed deliveries again", permissions=["resend"])
    def resend(self, request, queryset):
        from .actions import each_row
        from .alerting.notify import delivery_resend

        # each_row writes the AuditEvent (admin.resend) and a LogEntry per row, and shows a refusal per row.
        done = each_row(self, request, queryset, lambda row: delivery_resend(delivery_id=row.pk))
        self.message_user(request, f"{done} delivery(ies) queued again.", messages.SUCCESS if done else messages.INFO)

    @admin.display(description="queued", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="last error / why not sent")
    def detail(self, obj):
        # A skipped reminder keeps why it was not posted where a failed one keeps its error.
        return obj.last_error


@admin.register(RetentionRun)
class RetentionRunAdmin(AppendOnlyAdmin):
    """What each retention policy removed, newest first: the top rows are last night's run."""

    list_display = ["started", "policy", "removed", "batches", "cutoff", "duration", "error"]
    list_filter = ["policy"]

    @admin.display(description="started", ordering="started_at")
    def started(self, obj):
        return when(obj.started_at)

    @admin.display(description="took")
    def duration(self, obj):
        if not obj.finished_at:
            return "running"
        return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"


@admin.register(AuditArchive)
class AuditArchiveAdmin(AppendOnlyAdmin):
    list_display = ["day", "part", "rows", "bytes", "lock_mode", "retain_until", "verified_at", "pruned_at", "key"]
    list_filter = ["lock_mode"]
    date_hierarchy = "day"


@admin.register(AuditArchiveGap)
class AuditArchiveGapAdmin(AppendOnlyAdmin):
    """The audit event ids no archive part holds yet, which every nightly run reads again (integrations.audit
    .archive). The last, open-ended one is the usual "ids above the highest archived". A closed gap found nights
    ago is an id whose transaction is still open (it commits with its old day and goes into that day's next
    part) or was rolled back (forgotten once no older transaction is open): here staff see it waiting. Only the
    run writes these rows: a gap deleted by hand would leave its events out of the archive for good."""

    list_display = ["ids", "size", "found", "waiting"]
    list_display_links = None
    ordering = ["first_id"]

    @admin.display(description="ids", ordering="first_id")
    def ids(self, obj):
        return f"{obj.first_id} and up" if obj.last_id is None else f"{obj.first_id}–{obj.last_id}"

    @admin.display(description="how many ids")
    def size(self, obj):
        return "every new event" if obj.last_id is None else obj.last_id - obj.first_id + 1

    @admin.display(description="found", ordering="found_at")
    def found(self, obj):
        return when(obj.found_at)

    @admin.display(description="waiting")
    def waiting(self, obj):
        days = (timezone.now() - obj.found_at).days
        return f"{days} day{'s' if days != 1 else ''}"


class PeriodicTaskAdmin(AuditedAdminMixin, celery_beat_admin.PeriodicTaskAdmin):
    """django-celery-beat's admin, whose actions (enable, disable, toggle, run now) name no permission: Django offers
    them to staff who may only view the schedule, who could then switch off the sweepers or run a task at will.

    Its actions and edits write nothing to the audit trail or "Recent actions" either: here each selected task gets
    an AuditEvent `admin.<action>` and a LogEntry (disabling retention or the alert evaluation is a staff action like
    any other), and an edit `admin.periodictask.change` with the old and new values."""

    def get_actions(self, request):
        return super().get_actions(request) if self.has_change_permission(request) else {}

    def _audited(self, request, queryset, action, refused=""):
        from .actions import each_row
        from .errors import DomainError

        rows = list(queryset)
        action(request, queryset)  # the library's action on all rows at once: one message, one schedule reload

        def record(row):
            if refused:
                raise DomainError(404, "task_not_found", refused)

        each_row(self, request, rows, record)

    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request, queryset):
        self._audited(request, queryset, super().enable_tasks)

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request, queryset):
        self._audited(request, queryset, super().disable_tasks)

    @admin.action(description="Toggle activity of selected tasks", permissions=["change"])
    def toggle_tasks(self, request, queryset):
        self._audited(request, queryset, super().toggle_tasks)

    @admin.action(description="Run selected tasks", permissions=["change"])
    def run_tasks(self, request, queryset):
        self.celery_app.loader.import_default_modules()
        unknown = sorted({row.task for row in queryset if row.task not in self.celery_app.tasks})
        # The library runs none of the selected tasks when one of them is not registered.
        refused = f"Task {unknown[0]!r} is not registered: nothing was run." if unknown else ""
        self._audited(request, queryset, super().run_tasks, refused)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
