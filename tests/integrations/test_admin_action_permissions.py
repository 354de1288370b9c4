"""Admin actions change things (refund, void, cancel, erase, send again): staff who may only view get none of them."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import RequestFactory

from payments.models import Refund
from tests.factories import UserFactory
from tests.payments.factories import SucceededPaymentFactory

pytestmark = pytest.mark.django_db

# Users and groups (no action but delete, which has its permission) and axes (its one action drops expired login
# attempts only); every other registered admin, the hub's and beat's schedule, changes something with its actions.
NOT_CHECKED = {"auth", "axes"}


def staff_with(*prefixes):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__regex=rf"^({'|'.join(prefixes)})_"))
    return staff


def actions_offered_to(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return {
        f"{model._meta.label}.{name}"
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label not in NOT_CHECKED
        for name in model_admin.get_actions(request)
    }


def test_no_hub_admin_offers_an_action_to_staff_who_may_only_view():
    assert actions_offered_to(staff_with("view")) == set()


def test_staff_who_may_change_get_every_action_a_superuser_gets():
    everything = actions_offered_to(UserFactory(is_staff=True, is_superuser=True))
    assert "payments.Payment.refund_in_full" in everything
    assert actions_offered_to(staff_with("view", "change", "delete")) == everything


def test_staff_who_may_only_view_payments_cannot_refund_one(client, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_hub"  # configured: only the permission stands in the way
    payment = SucceededPaymentFactory(payment_intent_id="pi_paid1")
    selected = {"action": "refund_in_full", "_selected_action": [payment.pk]}
    client.force_login(staff_with("view"))
    client.post("/admin/payments/payment/", selected)
    assert not Refund.objects.exists()
    client.force_login(staff_with("view", "change"))
    client.post("/admin/payments/payment/", selected)
    assert Refund.objects.filter(payment=payment).exists()
