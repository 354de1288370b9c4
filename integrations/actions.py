"""Admin actions call the same services as the API, one selected row at a time.

A service refuses with a DomainError, or a provider fails it with a
ProviderError; here, in one place, either becomes a warning naming the row
(the API's exception handler is the other place, with the same sentence), so
no admin action catches errors itself. A service that answers False found
nothing to do for that row (not eligible): it is neither counted nor logged.

An action that changes anything names the permission it needs: Django offers
an action without `permissions` to every staff member who may only view the list.

    @admin.action(description="Void selected invoices", permissions=["change"])
    def void_invoices(self, request, queryset):
        done = each_row(self, request, queryset, lambda invoice: services.invoice_void(invoice=invoice))
        self.message_user(request, f"{done} invoice(s) voided.")
"""

from django.contrib import messages

from .audit.models import AuditEvent
from .audit.services import audit_record
from .errors import DomainError, ProviderError


def _action_label(modeladmin, request):
    name = request.POST.get("action", "")
    action = modeladmin.get_actions(request).get(name) if name else None
    return str(action[2]) if action else name or "admin action"


def each_row(modeladmin, request, rows, run, **details):
    """`run(row)` for every row; a refusal is shown as a warning and the next row goes on. How many were done.

    Each row the action ran on gets a LogEntry (its history and "Recent actions"
    say which staff member refunded, voided or cancelled it) and an AuditEvent
    `admin.<action name>` (outcome denied when the service refused) carrying
    `details` (what staff chose on the action's form, e.g. `assigned_to=user.pk`).
    """
    label = None
    done = 0
    action = f"admin.{request.POST.get('action', '') or 'action'}"[:64]
    for row in rows:
        try:
            result = run(row)
        except (DomainError, ProviderError) as exc:
            refusal = exc.as_api_error() if isinstance(exc, ProviderError) else exc
            audit_record(
                action=action,
                request=request,
                target=row,
                outcome=AuditEvent.Outcome.DENIED,
                error=refusal.code,
                **details,
            )
            modeladmin.message_user(
                request, f"{row._meta.verbose_name.capitalize()} {row.pk}: {refusal.detail}", messages.WARNING
            )
        else:
            if result is False:
                continue
            done += 1
            label = label or _action_label(modeladmin, request)
            modeladmin.log_change(request, row, f"{label} (done).")
            audit_record(action=action, request=request, target=row, **details)
    return done
