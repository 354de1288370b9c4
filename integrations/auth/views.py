"""POST /api/v1/auth/token/ (username + password -> a new token) and the owner's token list."""

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.errors import DomainError

from .serializers import ApiTokenSerializer, LoginSerializer, NewApiTokenSerializer, TokenCreateSerializer
from .tokens import token_create, token_list_for_user, token_revoke


def _new_token_body(token, key):
    return NewApiTokenSerializer({**ApiTokenSerializer(token).data, "token": key}).data


class ObtainTokenView(APIView):
    """Exchange a username and password for a new API token (throttled per IP and per username)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(request=LoginSerializer, responses={200: NewApiTokenSerializer}, auth=[])
    def post(self, request):
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # The Django request, so django-axes counts this attempt by IP and
        # username; a lockout is turned into 429 + Retry-After by its middleware.
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            # "invalid", the code the old DRF view answered with, so clients keep working.
            raise DomainError(400, "invalid", "Unable to log in with the given username and password.")
        # A token for a password is a login: last_login is stamped and django-axes
        # clears this user's and address's failure count (AXES_RESET_ON_SUCCESS).
        user_logged_in.send(sender=user.__class__, request=request._request, user=user)
        token, key = token_create(
            user=user, name=data.get("name") or "login", expires_in_days=data.get("expires_in_days")
        )
        return Response(_new_token_body(token, key))


class TokenListView(APIView):
    """Your API tokens (never their secret); POST makes another one, shown once."""

    @extend_schema(responses=ApiTokenSerializer(many=True))
    def get(self, request):
        return Response(ApiTokenSerializer(token_list_for_user(user=request.user), many=True).data)

    @extend_schema(request=TokenCreateSerializer, responses={201: NewApiTokenSerializer})
    def post(self, request):
        serializer = TokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        token, key = token_create(user=request.user, name=data.get("name"), expires_in_days=data.get("expires_in_days"))
        return Response(_new_token_body(token, key), status=status.HTTP_201_CREATED)


class TokenDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        """Revoke one of your tokens (it stops working at once)."""
        token_revoke(user=request.user, token_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)
