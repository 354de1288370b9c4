from django.urls import path

from . import views

app_name = "travel"

urlpatterns = [
    path("searches/", views.SearchView.as_view(), name="search"),
    path("searches/<str:search_id>/", views.SearchPageView.as_view(), name="search-page"),
    path("places/", views.PlacesView.as_view(), name="places"),
    path("watches/", views.WatchListCreateView.as_view(), name="watch-list"),
    path("watches/<int:pk>/", views.WatchDetailView.as_view(), name="watch-detail"),
]
