from django.urls import path

from . import views

app_name = "documents"

urlpatterns = [
    path("", views.DocumentListView.as_view(), name="list"),
    path("usage/", views.DocumentUsageView.as_view(), name="usage"),
    path("files/<str:token>/", views.DocumentFileView.as_view(), name="file"),
    path("<int:pk>/", views.DocumentDetailView.as_view(), name="detail"),
    path("<int:pk>/download/", views.DocumentDownloadView.as_view(), name="download"),
    path("<int:pk>/versions/", views.DocumentVersionListView.as_view(), name="versions"),
    path(
        "<int:pk>/versions/<int:number>/download/", views.DocumentVersionDownloadView.as_view(), name="version-download"
    ),
    path("<int:pk>/versions/<int:number>/restore/", views.DocumentVersionRestoreView.as_view(), name="version-restore"),
]
