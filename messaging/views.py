"""Thin DRF views: validate, call one service, return. Everything is owner-scoped."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from integrations.api.idempotency import idempotent
from integrations.api.ratelimit import ratelimit

from . import services
from .models import CallLog, SmsMessage
from .serializers import CallCreateSerializer, CallSerializer, SmsCreateSerializer, SmsSerializer


class _OwnedMixin:
    """The signed-in user's rows of `model`, newest first (another user's row is a 404)."""

    model = None

    def get_queryset(self):
        return self.model.objects.filter(owner=self.request.user).order_by("-created_at", "-id")


class _QueuedListView(_OwnedMixin, generics.ListAPIView):
    create_serializer_class = None

    def queue(self, request, create):
        """Validate, queue with one service (the task runs after commit), answer 202 with the row."""
        data = self.create_serializer_class(data=request.data)
        data.is_valid(raise_exception=True)
        row = create(owner=request.user, **data.validated_data)
        return Response(self.serializer_class(row).data, status=status.HTTP_202_ACCEPTED)


class SmsListCreateView(_QueuedListView):
    model = SmsMessage
    serializer_class = SmsSerializer
    create_serializer_class = SmsCreateSerializer

    @extend_schema(request=SmsCreateSerializer, responses={202: SmsSerializer})
    @ratelimit(group="messaging.sms_send", rate="60/m")
    @idempotent
    def post(self, request):
        # 202: queued; the send is paced per sender number and reported by status callbacks.
        return self.queue(request, services.sms_create)


class SmsDetailView(_OwnedMixin, generics.RetrieveAPIView):
    model = SmsMessage
    serializer_class = SmsSerializer


class CallListCreateView(_QueuedListView):
    model = CallLog
    serializer_class = CallSerializer
    create_serializer_class = CallCreateSerializer

    @extend_schema(request=CallCreateSerializer, responses={202: CallSerializer})
    @ratelimit(group="messaging.call_place", rate="20/m")
    @idempotent
    def post(self, request):
        return self.queue(request, services.call_create)


class CallDetailView(_OwnedMixin, generics.RetrieveAPIView):
    model = CallLog
    serializer_class = CallSerializer
