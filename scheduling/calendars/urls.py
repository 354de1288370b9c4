from django.urls import path

from . import views

app_name = "calendars"

urlpatterns = [
    path("", views.CalendarListView.as_view(), name="calendars"),
    path("<int:pk>/watch/", views.CalendarWatchView.as_view(), name="watch"),
    path("<int:pk>/events/", views.EventListCreateView.as_view(), name="events"),
    path("<int:pk>/events/<int:event>/", views.EventDetailView.as_view(), name="event"),
]
