"""Thin views over integrations.oauth.services.

The callback is where the provider sends the user's browser back, so it
accepts the session (the browser that started) as well as a token (an app
that relays the query string with POST). The state must belong to that user.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from ..audit.services import audit_record
from ..models import Connection
from . import services
from .serializers import (
    CallbackSerializer,
    ConnectionSerializer,
    DeleteResponseSerializer,
    StartResponseSerializer,
    StartSerializer,
)


class ConnectionListView(generics.ListAPIView):
    """Your connections: provider, account, capabilities, granted scopes, status, last use. Never tokens."""

    serializer_class = ConnectionSerializer

    def get_queryset(self):
        return Connection.objects.filter(owner=self.request.user).order_by("pk")


class ConnectionDetailView(APIView):
    @extend_schema(responses=ConnectionSerializer)
    def get(self, request, pk):
        return Response(ConnectionSerializer(services._owned(request.user, pk)).data)

    @extend_schema(responses=DeleteResponseSerializer)
    def delete(self, request, pk):
        """Revoke at the provider (Google) where possible, then delete the connection and its tokens."""
        result = services.connection_delete(owner=request.user, connection_id=pk)
        audit_record(action="connection.remove", request=request, target=("integrations.connection", pk))
        return Response(result)


class AuthorizationStartView(APIView):
    @extend_schema(request=StartSerializer, responses={200: StartResponseSerializer})
    def post(self, request, provider):
        """Start an authorization: send the user's browser to `authorization_url` (valid 10 minutes, once)."""
        data = StartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        url = services.authorization_start(
            owner=request.user,
            provider_key=provider,
            capabilities=data.validated_data["capabilities"],
            connection_id=data.validated_data.get("connection"),
        )
        return Response({"authorization_url": url})


class AuthorizationCallbackView(APIView):
    @extend_schema(
        parameters=[CallbackSerializer],
        responses={200: ConnectionSerializer, 400: OpenApiResponse(description="bad state or denied")},
    )
    def get(self, request, provider):
        """The provider's redirect: exchanges the code and stores the connection."""
        conn = services.authorization_complete(owner=request.user, provider_key=provider, params=request.query_params)
        audit_record(action="connection.add", request=request, target=conn, provider=conn.provider)
        return Response(ConnectionSerializer(conn).data)

    @extend_schema(request=CallbackSerializer, responses={200: ConnectionSerializer})
    def post(self, request, provider):
        """The same, for an app that received the redirect itself and relays its query parameters."""
        params = request.data if hasattr(request.data, "items") else {}
        conn = services.authorization_complete(owner=request.user, provider_key=provider, params=params)
        audit_record(action="connection.add", request=request, target=conn, provider=conn.provider)
        return Response(ConnectionSerializer(conn).data)
