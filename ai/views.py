import json

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.idempotency import idempotent
from integrations.api.ratelimit import ratelimit

from . import services
from .serializers import AiUsageSerializer, CompletionRequestSerializer, CompletionSerializer
from .usage import usage_for_user


class EventStreamRenderer(BaseRenderer):
    """Lets a client ask for `Accept: text/event-stream`; an error before the stream opens is one `error` event."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return f"event: error\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _user_rate(group, request):
    return settings.AI_USER_RATE


class CompletionView(APIView):
    """One completion over whichever configured provider answers first on the route."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        request=CompletionRequestSerializer,
        responses={
            200: OpenApiResponse(
                CompletionSerializer,
                description="The completion; with stream=true, Server-Sent Events instead: `delta` events "
                "({content}) then one `done` event carrying this object (or an `error` event).",
            ),
        },
    )
    @ratelimit(group="ai.completions", rate=_user_rate)
    # A repeat with the same Idempotency-Key gets the first answer without a
    # second provider call (and charge). A stream cannot be replayed: a
    # repeated streamed request runs again.
    @idempotent
    def post(self, request):
        serializer = CompletionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        params = serializer.validated_data
        key = request.headers.get("Idempotency-Key", "")
        if params["stream"]:
            events = services.completion_stream(user=request.user, params=params, idempotency_key=key)
            response = StreamingHttpResponse(events, content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
            return response
        return Response(services.completion_create(user=request.user, params=params, idempotency_key=key))


class AiUsageView(APIView):
    """Your AI tokens and cost this month, by provider and model, against your budget."""

    @extend_schema(responses=AiUsageSerializer)
    def get(self, request):
        return Response(AiUsageSerializer(usage_for_user(owner=request.user)).data)
