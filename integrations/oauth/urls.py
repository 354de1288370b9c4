from django.urls import path

from . import views

app_name = "oauth"

urlpatterns = [
    path("", views.ConnectionListView.as_view(), name="list"),
    path("<int:pk>/", views.ConnectionDetailView.as_view(), name="detail"),
    path("<slug:provider>/start/", views.AuthorizationStartView.as_view(), name="start"),
    path("<slug:provider>/callback/", views.AuthorizationCallbackView.as_view(), name="callback"),
]
