"""Thin DRF views: validate, call one service, return. Everything is owner-scoped."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from integrations.api.idempotency import idempotent
from integrations.api.ratelimit import ratelimit

from . import services
from .models import CallLog, SmsMessage
from .serializers import CallCreateSerializer, CallSerializer, SmsCreateSerializer, SmsSerializer


class SmsListCreateView(generics.ListAPIView):
    serializer_class = SmsSerializer

    def get_queryset(self):
        return SmsMessage.objects.filter(owner=self.request.user).order_by("-created_at", "-id")

    @extend_schema(request=SmsCreateSerializer, responses={202: SmsSerializer})
    @ratelimit(group="messaging.sms_send", rate="60/m")
    @idempotent
    def post(self, request):
        data = SmsCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sms = services.sms_create(owner=request.user, **data.validated_data)
        # 202: queued; the send is paced per sender number and reported by status callbacks.
        return Response(SmsSerializer(sms).data, status=status.HTTP_202_ACCEPTED)


class SmsDetailView(generics.RetrieveAPIView):
    serializer_class = SmsSerializer

    def get_queryset(self):
        return SmsMessage.objects.filter(owner=self.request.user)


class CallListCreateView(generics.ListAPIView):
    serializer_class = CallSerializer

    def get_queryset(self):
        return CallLog.objects.filter(owner=self.request.user).order_by("-created_at", "-id")

    @extend_schema(request=CallCreateSerializer, responses={202: CallSerializer})
    @ratelimit(group="messaging.call_place", rate="20/m")
    @idempotent
    def post(self, request):
        data = CallCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        call = services.call_create(owner=request.user, **data.validated_data)
        return Response(CallSerializer(call).data, status=status.HTTP_202_ACCEPTED)


class CallDetailView(generics.RetrieveAPIView):
    serializer_class = CallSerializer

    def get_queryset(self):
        return CallLog.objects.filter(owner=self.request.user)
