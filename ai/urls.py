from django.urls import path

from .views import AiUsageView, CompletionView

app_name = "ai"

urlpatterns = [
    path("completions/", CompletionView.as_view(), name="completions"),
    path("usage/", AiUsageView.as_view(), name="usage"),
]
