"""Stripe."""

from ._env import env
from .base import APP_URL
from .celery import CELERY_BEAT_SCHEDULE

# Stripe
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# Where Stripe Checkout sends the customer back (fixed here, never taken from the client: no open redirect).
STRIPE_CHECKOUT_SUCCESS_URL = env.str("STRIPE_CHECKOUT_SUCCESS_URL", default="") or (
    f"{APP_URL}/payments/checkout/success?session_id={{CHECKOUT_SESSION_ID}}"
)
STRIPE_CHECKOUT_CANCEL_URL = env.str("STRIPE_CHECKOUT_CANCEL_URL", default="") or f"{APP_URL}/payments/checkout/cancel"
# The reconciliation beat task: how often, and how far back it lists PaymentIntents and refunds.
STRIPE_RECONCILE_INTERVAL_SECONDS = env.int("STRIPE_RECONCILE_INTERVAL_SECONDS", default=3600)
STRIPE_RECONCILE_HOURS = env.int("STRIPE_RECONCILE_HOURS", default=72)
CELERY_BEAT_SCHEDULE["payments.reconcile_stripe"] = {
    "task": "payments.reconcile_stripe",
    "schedule": float(STRIPE_RECONCILE_INTERVAL_SECONDS),
    "kwargs": {"hours": STRIPE_RECONCILE_HOURS},
}
