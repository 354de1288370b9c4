from django.urls import path

from .inbox import inbox

app_name = "webhooks"

urlpatterns = [
    path("<slug:provider>/", inbox, name="inbox"),
]
