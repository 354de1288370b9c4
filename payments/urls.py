from django.urls import path

from . import views

app_name = "payments"

urlpatterns = [
    path("invoices/", views.InvoiceListCreateView.as_view(), name="invoices"),
    path("invoices/<int:pk>/", views.InvoiceDetailView.as_view(), name="invoice"),
    path("invoices/<int:pk>/pay/", views.InvoicePayView.as_view(), name="invoice-pay"),
    path("invoices/<int:pk>/void/", views.InvoiceVoidView.as_view(), name="invoice-void"),
    path("payments/<int:pk>/refunds/", views.PaymentRefundsView.as_view(), name="payment-refunds"),
    path("subscriptions/", views.SubscriptionListCreateView.as_view(), name="subscriptions"),
    path("subscriptions/<int:pk>/", views.SubscriptionDetailView.as_view(), name="subscription"),
    path(
        "subscriptions/<int:pk>/change-price/",
        views.SubscriptionChangePriceView.as_view(),
        name="subscription-change-price",
    ),
    path("subscriptions/<int:pk>/cancel/", views.SubscriptionCancelView.as_view(), name="subscription-cancel"),
]
