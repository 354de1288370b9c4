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
        # Two first payments racing create one Stripe customer, not two.
        idempotency_key=f"hub-customer-user-{user.pk}",
        owner=user,
    )
    Customer.objects.filter(pk=customer.pk, external_id="").update(external_id=created.id)
    customer.refresh_from_db()
    return customer.external_id
