"""Admin actions call the same services as the API, one selected row at a time.

A service refuses with a DomainError; here, in one place, that refusal becomes
a warning naming the row (the API's exception handler is the other place), so
no admin action catches domain errors itself.

    @admin.action(description="Void selected invoices")
    def void_invoices(self, request, queryset):
        done = each_row(self, request, queryset, lambda invoice: services.invoice_void(invoice=invoice))
        self.message_user(request, f"{done} invoice(s) voided.")
"""

from django.contrib import messages

from .audit.models import AuditEvent
from .audit.services import audit_record
from .errors import DomainError


def _action_label(modeladmin, request):
    name = request.POST.get("action", "")
    action = modeladmin.get_actions(request).get(name) if name else None
    return str(action[2]) if action else name or "admin action"


def each_row(modeladmin, request, rows, run):
    """`run(row)` for every row; a DomainError is shown as a warning and the next row goes on. How many ran.

    Each row the action ran on gets a LogEntry (its history and "Recent actions"
    say which staff member refunded, voided or cancelled it) and an AuditEvent
    `admin.<action name>` (outcome denied when the service refused).
    """
    label = None
    done = 0
    action = f"admin.{request.POST.get('action', '') or 'action'}"[:64]
    for row in rows:
        try:
            run(row)
        except DomainError as exc:
            audit_record(action=action, request=request, target=row, outcome=AuditEvent.Outcome.DENIED, error=exc.code)
            modeladmin.message_user(
                request, f"{row._meta.verbose_name.capitalize()} {row.pk}: {exc.detail}", messages.WARNING
            )
        else:
            done += 1
            label = label or _action_label(modeladmin, request)
            modeladmin.log_change(request, row, f"{label} (done).")
            audit_record(action=action, request=request, target=row)
    return done
