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

from .errors import DomainError


def each_row(modeladmin, request, rows, run):
    """`run(row)` for every row; a DomainError is shown as a warning and the next row goes on. How many ran."""
    done = 0
    for row in rows:
        try:
            run(row)
        except DomainError as exc:
            modeladmin.message_user(
                request, f"{row._meta.verbose_name.capitalize()} {row.pk}: {exc.detail}", messages.WARNING
            )
        else:
            done += 1
    return done
