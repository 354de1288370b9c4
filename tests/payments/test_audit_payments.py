"""Staff money actions leave an audit event: API void, admin actions (done or refused), admin edits."""

import pytest

from integrations.audit.models import AuditEvent
from payments.models import Invoice
from tests.payments.factories import InvoiceFactory

pytestmark = pytest.mark.django_db


def events(action):
    return list(AuditEvent.objects.filter(action=action).values_list("actor_label", "target_id", "outcome"))


def test_voiding_by_api_is_audited_with_the_staff_member(staff_client, staff_user):
    invoice = InvoiceFactory()
    assert staff_client.post(f"/api/v1/payments/invoices/{invoice.pk}/void/").status_code == 200
    assert events("invoice.void") == [(f"staff:{staff_user.username}", str(invoice.pk), "ok")]


def test_an_admin_action_is_audited_done_or_refused(client, staff_user):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    open_invoice = InvoiceFactory()
    paid = InvoiceFactory(status=Invoice.Status.PAID)
    client.post(
        "/admin/payments/invoice/",
        {"action": "void_invoices", "_selected_action": [open_invoice.pk, paid.pk]},
    )
    assert sorted(events("admin.void_invoices"), key=lambda e: int(e[1])) == [
        (f"staff:{staff_user.username}", str(open_invoice.pk), "ok"),
        (f"staff:{staff_user.username}", str(paid.pk), "denied"),
    ]


def test_an_admin_edit_of_an_invoice_records_old_and_new_values(client, staff_user):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    invoice = InvoiceFactory(description="Consulting, November")
    page = client.get(f"/admin/payments/invoice/{invoice.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data.update(
        {
            "description": "Consulting, December",
            "payment_set-TOTAL_FORMS": 0,
            "payment_set-INITIAL_FORMS": 0,
            "payments-TOTAL_FORMS": 0,
            "payments-INITIAL_FORMS": 0,
        }
    )
    response = client.post(f"/admin/payments/invoice/{invoice.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    event = AuditEvent.objects.get(action="admin.invoice.change")
    assert event.details["changes"]["description"] == ["Consulting, November", "Consulting, December"]
