"""Thin DRF views for calendars and their events: validate, call one service, return. Owner-scoped (404)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.idempotency import HEADER, idempotent
from integrations.api.ratelimit import ratelimit

from . import expand, services
from .serializers import (
    CalendarSerializer,
    EventInSerializer,
    EventQuerySerializer,
    EventSerializer,
    OccurrenceSerializer,
    WindowSerializer,
)

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


LIST_PARAMS = [
    OpenApiParameter(
        "start",
        OpenApiTypes.DATETIME,
        description=(
            "Window start (ISO 8601 with an offset); with end. Required with expand=true. All-day events count on "
            "the dates the window covers in the offset it is given in."
        ),
    ),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="Window end; with start. Required with expand=true."),
    OpenApiParameter(
        "expand",
        bool,
        description=(
            "true: every recurring series in the window is expanded into its occurrences (each with its own "
            "start/end and its series), computed from the synced rows in the event's own zone (wall-clock times "
            "survive DST), EXDATEs and cancelled occurrences left out, changed occurrences as changed. Needs "
            f"start and end at most {expand.MAX_WINDOW_DAYS} days apart. Default false: single events and "
            "series rows as stored."
        ),
    ),
]
LIST_RESPONSE = PolymorphicProxySerializer(
    component_name="EventOrOccurrence",
    serializers=[EventSerializer, OccurrenceSerializer],
    resource_type_field_name=None,
    many=True,
)


class EventListCreateView(generics.ListAPIView):
    serializer_class = EventSerializer

    @extend_schema(
        parameters=LIST_PARAMS,
        responses=LIST_RESPONSE,
        description="The calendar's events (Event), or with expand=true its events and occurrences (Occurrence).",
    )
    def get(self, request, *args, **kwargs):
        window = self._window()
        if not window["expand"]:
            return super().get(request, *args, **kwargs)
        found = expand.event_occurrences(
            owner=request.user, calendar_id=self.kwargs["pk"], start=window["start"], end=window["end"]
        )
        return self.get_paginated_response(OccurrenceSerializer(self.paginate_queryset(found), many=True).data)

    def _window(self):
        window = WindowSerializer(data=self.request.query_params)
        window.is_valid(raise_exception=True)
        return window.validated_data

    def get_queryset(self):
        window = self._window()
        return services.event_list(
            owner=self.request.user, calendar_id=self.kwargs["pk"], start=window["start"], end=window["end"]
        )

    @extend_schema(request=EventInSerializer, responses={201: EventSerializer})
    @ratelimit(group="scheduling.calendar_event_write", rate="60/m")
    @idempotent
    def post(self, request, pk):
        data = EventInSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        query = EventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        row = services.event_create(
            owner=request.user,
            calendar_id=pk,
            data=data.validated_data,
            notify=query.validated_data["notify"],
            idempotency_key=request.headers.get(HEADER, ""),
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
