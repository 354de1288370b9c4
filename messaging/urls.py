from django.urls import path

from . import views

app_name = "messaging"

urlpatterns = [
    path("sms/", views.SmsListCreateView.as_view(), name="sms-list"),
    path("sms/<int:pk>/", views.SmsDetailView.as_view(), name="sms-detail"),
    path("calls/", views.CallListCreateView.as_view(), name="call-list"),
    path("calls/<int:pk>/", views.CallDetailView.as_view(), name="call-detail"),
]
