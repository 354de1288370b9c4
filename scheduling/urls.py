from django.urls import path

from . import views

app_name = "scheduling"

urlpatterns = [
    path("availability/", views.AvailabilityView.as_view(), name="availability"),
    path("providers/", views.ProviderListView.as_view(), name="providers"),
    path("meetings/", views.MeetingListCreateView.as_view(), name="meetings"),
    path("meetings/<int:pk>/", views.MeetingDetailView.as_view(), name="meeting"),
    path("meetings/<int:pk>/recordings/", views.MeetingRecordingsView.as_view(), name="meeting-recordings"),
    path("meetings/<int:pk>/attendance/", views.MeetingAttendanceView.as_view(), name="meeting-attendance"),
    path("preferences/", views.PreferenceView.as_view(), name="preferences"),
    path("recordings/usage/", views.RecordingUsageView.as_view(), name="recording-usage"),
    path("recording-links/<str:token>/", views.RecordingLinkView.as_view(), name="recording-link"),
]
