"""Pages for people (not the API): where Stripe Checkout returns the customer."""

from django.urls import path

from . import pages

app_name = "payments-pages"

urlpatterns = [
    path("checkout/success", pages.checkout_success, name="checkout-success"),
    path("checkout/cancel", pages.checkout_cancel, name="checkout-cancel"),
]
