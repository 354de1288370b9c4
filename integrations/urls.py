from django.urls import path

from .views.api import ProviderCallListView, ProviderStatusView, UsageView

app_name = "integrations"

urlpatterns = [
    path("status/", ProviderStatusView.as_view(), name="status"),
    path("usage/", UsageView.as_view(), name="usage"),
    path("calls/", ProviderCallListView.as_view(), name="calls"),
]
