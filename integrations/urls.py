from django.urls import path

from .views.api import ProviderStatusView

app_name = "integrations"

urlpatterns = [
    path("status/", ProviderStatusView.as_view(), name="status"),
]
