"""Thin DRF views for meetings: validate, call one service, return. Everything is owner-scoped."""

from django.conf import settings
from django.http import FileResponse, HttpResponseRedirect, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations import registry
from integrations.api.idempotency import HEADER, idempotent
from integrations.api.ratelimit import ratelimit
from integrations.oauth.config import by_registry_name

from . import availability, capabilities, recordings, services
from .models import Meeting, MeetingAttendance
from .serializers import (
    AttendanceSerializer,
    AvailabilityRequestSerializer,
    AvailabilitySerializer,
    MeetingCreateSerializer,
    MeetingSerializer,
    MeetingUpdateSerializer,
    PreferenceSerializer,
    PreferenceUpdateSerializer,
    ProviderSerializer,
    RecordingSerializer,
    RecordingUsageSerializer,
)


class ProviderListView(APIView):
    @extend_schema(responses={200: ProviderSerializer(many=True)})
    def get(self, request):
        rows = []
        for name, spec in capabilities.PROVIDERS.items():
            missing = registry.get_provider(spec["registry"]).missing()
            rows.append(
                {
                    "provider": name,
                    "available": spec["available"],
                    "configured": spec["available"] and not missing,
                    "missing": missing,
                    "capabilities": sorted(capabilities.offered(name)),
                    "connection": by_registry_name(spec["oauth"]).key if spec["oauth"] else None,
                    "needs_grant": spec["needs_grant"],
                    "not_configured": capabilities.not_configured(name),
                }
            )
        return Response(ProviderSerializer(rows, many=True).data)


class MeetingListCreateView(generics.ListAPIView):
    serializer_class = MeetingSerializer

    def get_queryset(self):
        return (
            Meeting.objects.filter(owner=self.request.user)
            .prefetch_related("participants")
            .order_by("-start_time", "-id")
        )

    @extend_schema(request=MeetingCreateSerializer, responses={201: MeetingSerializer})
    @ratelimit(group="scheduling.meeting_create", rate="30/m")
    @idempotent
    def post(self, request):
        data = MeetingCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values["meeting_settings"] = values.pop("settings")
        meeting = services.meeting_create(owner=request.user, idempotency_key=request.headers.get(HEADER, ""), **values)
        return Response(MeetingSerializer(meeting).data, status=status.HTTP_201_CREATED)


class MeetingDetailView(generics.RetrieveAPIView):
    serializer_class = MeetingSerializer

    def get_queryset(self):
        return Meeting.objects.filter(owner=self.request.user).prefetch_related("participants")

    @extend_schema(request=MeetingUpdateSerializer, responses={200: MeetingSerializer})
    def patch(self, request, pk):
        meeting = self.get_object()
        data = MeetingUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        meeting = services.meeting_update(meeting=meeting, **data.validated_data)
        return Response(MeetingSerializer(meeting).data)

    @extend_schema(responses={200: MeetingSerializer})
    def delete(self, request, pk):
        meeting = services.meeting_cancel(
            meeting=self.get_object(), notify=request.query_params.get("notify") != "false"
        )
        return Response(MeetingSerializer(meeting).data)


class MeetingRecordingsView(generics.GenericAPIView):
    serializer_class = RecordingSerializer
    pagination_class = None

    def get_queryset(self):
        return Meeting.objects.filter(owner=self.request.user)

    @extend_schema(responses={200: RecordingSerializer(many=True)})
    def get(self, request, pk):
        recordings = services.recordings_refresh(meeting=self.get_object())
        return Response(RecordingSerializer(recordings, many=True, context={"request": request}).data)


class MeetingAttendanceView(generics.ListAPIView):
    """Who was in the meeting when: one row per stretch (a rejoin is a new row), from the provider's webhooks."""

    serializer_class = AttendanceSerializer

    def get_queryset(self):
        meeting = generics.get_object_or_404(Meeting.objects.filter(owner=self.request.user), pk=self.kwargs["pk"])
        return MeetingAttendance.objects.filter(meeting=meeting).order_by("joined_at", "pk")


class PreferenceView(APIView):
    @extend_schema(responses=PreferenceSerializer, summary="Your scheduling preferences")
    def get(self, request):
        return Response(PreferenceSerializer(recordings.preference_for(request.user)).data)

    @extend_schema(request=PreferenceUpdateSerializer, responses=PreferenceSerializer)
    def patch(self, request):
        """`copy_recordings: true` copies each recording booked from now on to the hub's storage, at its cost."""
        data = PreferenceUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pref = recordings.preference_update(owner=request.user, **data.validated_data)
        return Response(PreferenceSerializer(pref).data)


class RecordingUsageView(APIView):
    @extend_schema(responses=RecordingUsageSerializer, summary="Bytes of your recording copies and their monthly cost")
    def get(self, request):
        return Response(RecordingUsageSerializer(recordings.recordings_storage_usage(owner=request.user)).data)


class RecordingLinkView(APIView):
    """The link is the credential (signed, short-lived); the file streams from the provider."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request, token):
        recording = services.recording_from_token(token)
        if recording.copy_status == recording.Copy.COPIED:
            return self._copy(recording)
        upstream = services.recording_open(recording=recording)

        def chunks():
            try:
                yield from upstream.iter_bytes(64 * 1024)
            finally:
                upstream.close()

        response = StreamingHttpResponse(
            chunks(), content_type=upstream.headers.get("content-type", "application/octet-stream")
        )
        if upstream.headers.get("content-length"):
            response["Content-Length"] = upstream.headers["content-length"]
        response["Content-Disposition"] = (
            f'attachment; filename="recording-{recording.pk}.{recording.file_type.lower() or "bin"}"'
        )
        response["Cache-Control"] = "private, no-store"
        return response

    def _copy(self, recording):
        """The hub's own copy (the owner opted in): a short presigned S3 redirect, or the file streamed."""
        kind, source, filename = recordings.recording_copy_source(
            recording=recording, ttl=settings.MEETING_RECORDING_LINK_TTL_SECONDS
        )
        if kind == "redirect":
            response = HttpResponseRedirect(source)
        else:
            response = FileResponse(source, as_attachment=True, filename=filename)
        response["Cache-Control"] = "private, no-store"
        return response


class AvailabilityView(APIView):
    """The common free slots of several people, ranked by their working hours (scheduling.availability)."""

    @extend_schema(request=AvailabilityRequestSerializer, responses={200: AvailabilitySerializer})
    @ratelimit(group="scheduling.availability", rate="60/m")
    def post(self, request):
        data = AvailabilityRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        answer = availability.availability_find(caller=request.user, **data.validated_data)
        return Response(AvailabilitySerializer(answer).data)
