"""Thin DRF views for calendars and their events: validate, call one service, return. Owner-scoped (404)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.idempotency import idempotent
from integrations.api.ratelimit import ratelimit

from . import services
from .serializers import CalendarSerializer, EventInSerializer, EventQuerySerializer, EventSerializer, WindowSerializer

SCOPE_PARAMS = [
    OpenApiParameter("scope", str, enum=["this", "following", "all"], description="What a recurring change touches."),
    OpenApiParameter("original_start", str, description="On a series: the occurrence's planned start."),
    OpenApiParameter("notify", bool, description="Send the attendees updates (default true)."),
]


class CalendarListView(generics.ListAPIView):
    serializer_class = CalendarSerializer

    @extend_schema(parameters=[OpenApiParameter("refresh", bool, description="Read the list from the providers now.")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        refresh = self.request.query_params.get("refresh") in ("1", "true")
        return services.calendar_list(owner=self.request.user, refresh=refresh)


class EventListCreateView(generics.ListAPIView):
    serializer_class = EventSerializer

    @extend_schema(parameters=[OpenApiParameter("start", str), OpenApiParameter("end", str)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        window = WindowSerializer(data=self.request.query_params)
        window.is_valid(raise_exception=True)
        return services.event_list(owner=self.request.user, calendar_id=self.kwargs["pk"], **window.validated_data)

    @extend_schema(request=EventInSerializer, responses={201: EventSerializer})
    @ratelimit(group="scheduling.calendar_event_write", rate="60/m")
    @idempotent
    def post(self, request, pk):
        data = EventInSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        query = EventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        row = services.event_create(
            owner=request.user, calendar_id=pk, data=data.validated_data, notify=query.validated_data["notify"]
        )
        return Response(EventSerializer(row).data, status=status.HTTP_201_CREATED)


class EventDetailView(APIView):
    @extend_schema(responses={200: EventSerializer})
    def get(self, request, pk, event):
        return Response(EventSerializer(services.event_get(owner=request.user, calendar_id=pk, event_id=event)).data)

    @extend_schema(request=EventInSerializer, responses={200: EventSerializer}, parameters=SCOPE_PARAMS)
    @ratelimit(group="scheduling.calendar_event_write", rate="60/m")
    def patch(self, request, pk, event):
        data = EventInSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        query = EventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        row = services.event_update(
            owner=request.user, calendar_id=pk, event_id=event, data=data.validated_data, **query.validated_data
        )
        return Response(EventSerializer(row).data)

    @extend_schema(responses={204: None}, parameters=SCOPE_PARAMS)
    @ratelimit(group="scheduling.calendar_event_write", rate="60/m")
    def delete(self, request, pk, event):
        query = EventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        services.event_delete(owner=request.user, calendar_id=pk, event_id=event, **query.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CalendarWatchView(APIView):
    """Turn on push for one calendar (done by itself for new calendars when the hub is reachable)."""

    @extend_schema(request=None, responses={200: CalendarSerializer})
    @ratelimit(group="scheduling.calendar_watch", rate="10/m")
    def post(self, request, pk):
        return Response(CalendarSerializer(services.calendar_push_start(owner=request.user, calendar_id=pk)).data)
