from django.urls import path

from . import views

app_name = "privacy"

urlpatterns = [
    path("export/", views.ExportCreateView.as_view(), name="export"),
    path("exports/", views.ExportListView.as_view(), name="exports"),
    path("exports/files/<str:token>/", views.ExportFileView.as_view(), name="export-file"),
    path("exports/<int:pk>/", views.ExportDetailView.as_view(), name="export-detail"),
    path("erase/", views.EraseView.as_view(), name="erase"),
    path("erase/cancel/", views.EraseCancelView.as_view(), name="erase-cancel"),
    path("erasures/<int:pk>/", views.ErasureDetailView.as_view(), name="erasure-detail"),
]
