from django.urls import path

from .views import ObtainTokenView, TokenDetailView, TokenListView

urlpatterns = [
    path("token/", ObtainTokenView.as_view(), name="api-token"),
    path("tokens/", TokenListView.as_view(), name="api-tokens"),
    path("tokens/<int:pk>/", TokenDetailView.as_view(), name="api-token-detail"),
]
