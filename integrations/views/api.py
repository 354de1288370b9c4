from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.pagination import CreatedCursorPagination
from integrations.models import ProviderCall
from integrations.selectors import provider_status_list
from integrations.serializers import (
    ProviderCallSerializer,
    ProviderStatusSerializer,
    StaffProviderStatusSerializer,
    UsageSerializer,
)
from integrations.usage import usage_for_owner


class ProviderStatusView(APIView):
    """One entry per provider: configured or not, which settings are missing, circuit state."""

    @extend_schema(
        responses=ProviderStatusSerializer(many=True),
        description="Staff also get last_success_at, calls_24h and error_rate_24h.",
    )
    def get(self, request):
        staff = request.user.is_staff
        serializer = StaffProviderStatusSerializer if staff else ProviderStatusSerializer
        return Response(serializer(provider_status_list(staff=staff), many=True).data)


class UsageView(APIView):
    """Your own provider calls and their cost this month, by provider."""

    @extend_schema(responses=UsageSerializer)
    def get(self, request):
        return Response(UsageSerializer(usage_for_owner(owner=request.user)).data)


@extend_schema(parameters=[OpenApiParameter("provider", str, description="Only calls to this provider")])
class ProviderCallListView(generics.ListAPIView):
    """Your own provider calls, newest first (cursor-paginated)."""

    serializer_class = ProviderCallSerializer
    pagination_class = CreatedCursorPagination

    def get_queryset(self):
        calls = ProviderCall.objects.filter(owner=self.request.user)
        provider = self.request.query_params.get("provider")
        if provider:
            calls = calls.filter(provider=provider)
        return calls
