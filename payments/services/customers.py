"""Stripe customers: one per user, created once."""

from ..models import Customer
from ..providers import stripe as stripe_api


def customer_ensure(*, user):
    """The user's Stripe customer id, creating the customer once (idempotently) on first use."""
    customer, _ = Customer.objects.get_or_create(user=user)
    if customer.external_id:
        return customer.external_id
    created = stripe_api.customer_create(
        email=user.email,
        name=user.get_full_name(),
        user_id=user.pk,
        # Two first payments racing create one Stripe customer, not two. The row's id is part of the key:
        # a customer deleted on Stripe loses its row (customer_forget), and the next one is created under a
        # new key instead of Stripe replaying the deleted customer for 24 h.
        idempotency_key=f"hub-customer-user-{user.pk}-{customer.pk}",
        owner=user,
    )
    Customer.objects.filter(pk=customer.pk, external_id="").update(external_id=created.id)
    customer.refresh_from_db()
    return customer.external_id


def customer_forget(*, external_id):
    """A customer deleted on Stripe (in the Dashboard): Stripe refuses every payment or subscription for it,
    so its row goes, and the user's next payment creates a new customer. Gone already counts as done."""
    if external_id:
        Customer.objects.filter(external_id=external_id).delete()
