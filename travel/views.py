"""Thin DRF views: validate, call one service, return.

Searches are not owned objects (the same route and dates answer every user
from one cache entry); watches are, and another user's watch is a 404.
"""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.pagination import CreatedCursorPagination
from integrations.api.ratelimit import ratelimit
from integrations.api.renderers import OrjsonRenderer
from integrations.api.strict import ThreadValidator

from . import services
from .models import PriceWatch
from .serializers import (
    PlacesQuerySerializer,
    PlacesResponseSerializer,
    SearchPageQuerySerializer,
    SearchRequestSerializer,
    SearchResponseSerializer,
    WatchCreateSerializer,
    WatchDetailSerializer,
    WatchSerializer,
    flatten_errors,
)


def _valid(serializer):
    """Validated data, or a 400 whose `fields` name each bad field by its path (`slices[1].origin`)."""
    if not serializer.is_valid():
        raise ValidationError(flatten_errors(serializer.errors))
    return serializer.validated_data


# A search's body is validated by a serializer bound once per thread: a new one per request deep-copied its
# ~20 fields first, most of the validation's cost on the path the 5 ms budget over Duffel covers (issue 13).
SEARCH_REQUEST = ThreadValidator(SearchRequestSerializer)


def _search_params(data):
    """As `_valid`, for a search body."""
    params, errors = SEARCH_REQUEST.validate(data)
    if errors:
        raise ValidationError(flatten_errors(errors))
    return params


def _search_rate(group, request):
    return settings.TRAVEL_SEARCH_USER_RATE


def _places_rate(group, request):
    return settings.TRAVEL_PLACES_USER_RATE


# A search answer's offers are JSON already (orjson fragments, see travel.services.search).
SEARCH_RENDERERS = [OrjsonRenderer, BrowsableAPIRenderer]


def _answer(data):
    response = Response(data)
    response["X-Cache"] = "HIT" if data["cache"]["hit"] else "MISS"
    return response


class SearchView(APIView):
    """Search flights: one-way, return or multi-city (up to 6 slices); cached, filtered, sorted, paginated."""

    renderer_classes = SEARCH_RENDERERS

    @extend_schema(request=SearchRequestSerializer, responses=SearchResponseSerializer)
    @ratelimit(group="travel.search", rate=_search_rate)
    def post(self, request):
        params = _search_params(request.data)
        return _answer(services.flight_search(user=request.user, params=params))


class SearchPageView(APIView):
    """A later page of a search, from the cursor in `next` (410 once the search has left the cache or run again)."""

    renderer_classes = SEARCH_RENDERERS

    @extend_schema(
        parameters=[OpenApiParameter("cursor", str, required=True)],
        responses=SearchResponseSerializer,
    )
    def get(self, request, search_id):
        params = _valid(SearchPageQuerySerializer(data=request.query_params))
        return _answer(services.flight_search_page(search_id=search_id, cursor=params["cursor"]))


class PlacesView(APIView):
    """Airport and city suggestions for a name (cached for a day)."""

    @extend_schema(parameters=[OpenApiParameter("q", str, required=True)], responses=PlacesResponseSerializer)
    @ratelimit(group="travel.places", rate=_places_rate)
    def get(self, request):
        params = _valid(PlacesQuerySerializer(data=request.query_params))
        return Response(services.places_suggest(user=request.user, text=params["q"]))


class WatchListCreateView(generics.ListAPIView):
    """Your price watches; POST one to be told when a route gets cheaper."""

    serializer_class = WatchSerializer
    pagination_class = CreatedCursorPagination

    def get_queryset(self):
        return PriceWatch.objects.filter(owner=self.request.user)

    @extend_schema(request=WatchCreateSerializer, responses={201: WatchSerializer})
    @ratelimit(group="travel.watch", rate=_search_rate)
    def post(self, request):
        params = _valid(WatchCreateSerializer(data=request.data))
        watch = services.watch_create(user=request.user, params=params)
        return Response(WatchSerializer(watch).data, status=status.HTTP_201_CREATED)


class WatchDetailView(APIView):
    """One watch with its price history as chart-ready series; DELETE cancels it."""

    @extend_schema(responses=WatchDetailSerializer)
    def get(self, request, pk):
        return Response(WatchDetailSerializer(services.watch_get(user=request.user, watch_id=pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk):
        services.watch_cancel(user=request.user, watch_id=pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WatchPauseView(APIView):
    """Stop re-searching a watch for now (its history is kept)."""

    @extend_schema(request=None, responses=WatchSerializer)
    def post(self, request, pk):
        watch = services.watch_get(user=request.user, watch_id=pk)
        services.watch_set_status(watch=watch, to=PriceWatch.Status.PAUSED)
        return Response(WatchSerializer(watch).data)


class WatchResumeView(APIView):
    """Re-search a paused watch again, from its next slot of the interval."""

    @extend_schema(request=None, responses=WatchSerializer)
    def post(self, request, pk):
        watch = services.watch_get(user=request.user, watch_id=pk)
        services.watch_set_status(watch=watch, to=PriceWatch.Status.ACTIVE)
        return Response(WatchSerializer(watch).data)
