from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.selectors import provider_status_list
from integrations.serializers import ProviderStatusSerializer


class ProviderStatusView(APIView):
    """One entry per provider: configured or not, which settings are missing, circuit state."""

    @extend_schema(responses=ProviderStatusSerializer(many=True))
    def get(self, request):
        rows = provider_status_list(staff=request.user.is_staff)
        return Response(ProviderStatusSerializer(rows, many=True).data)
