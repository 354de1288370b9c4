import asyncio
import json

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.aio import db_hop, db_hop_or_undo
from integrations.api import idempotency
from integrations.api.ratelimit import ratelimit_check
from integrations.models import IdempotencyRecord

from . import services
from .serializers import AiUsageSerializer, CompletionRequestSerializer, CompletionSerializer, completion_params
from .usage import limits_keys, usage_for_user


class EventStreamRenderer(BaseRenderer):
    """Lets a client ask for `Accept: text/event-stream`: an error before the stream opens is one `error` event,
    a whole (non-streamed or replayed) answer one `done` event, as a stream ends with."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        event = "done" if response is not None and response.status_code < 400 else "error"
        return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


class AsyncAPIView(APIView):
    """An APIView whose handlers are coroutines, for endpoints that wait on providers.

    DRF's dispatch is synchronous; this one runs DRF's checks (authentication,
    permissions, content negotiation) plus the view's own `prepare` in one hop
    to a thread, since they read the database, then awaits the handler on the
    event loop. A DRF Response is rendered here and handed on as a plain
    HttpResponse, which saves Django another thread hop to render it.
    """

    def prepare(self, request, *args, **kwargs):
        """Synchronous work before the handler (runs in a thread): DRF's checks, then the view's own."""
        self.initial(request, *args, **kwargs)

    def prepare_cancelled(self):
        """Undo what a `prepare` that completed took, when the client went away meanwhile (runs in a thread)."""

    async def dispatch(self, request, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            method = request.method.lower()
            handler = getattr(self, method, None) if method in self.http_method_names else None
            await db_hop_or_undo(self.prepare_cancelled, self.prepare, request, *args, **kwargs)
            response = (handler or self.http_method_not_allowed)(request, *args, **kwargs)
            if asyncio.iscoroutine(response):
                response = await response
        except Exception as exc:  # noqa: BLE001 - DRF's handler decides, as APIView.dispatch does
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        if isinstance(self.response, Response):
            self.response.render()
            plain = HttpResponse(self.response.rendered_content, status=self.response.status_code)
            for name, value in self.response.items():
                plain[name] = value
            return plain
        return self.response


def _user_rate(group, request):
    return settings.AI_USER_RATE


async def _sse_response(request, events, **headers):
    if "wsgi.version" in request.META:
        # A WSGI server (manage.py runserver, gunicorn's sync workers) iterates the response after this
        # request's event loop has ended, in a new loop where the provider's open stream no longer works:
        # the client got one delta, then an error. Collect the events while this loop runs; the answer
        # then arrives whole instead of event by event. config.asgi streams.
        events = [event async for event in events]
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    for name, value in headers.items():
        response[name] = value
    return response


class CompletionView(AsyncAPIView):
    """One completion over whichever configured provider answers first on the route.

    Async end to end (see ai.services): a streamed answer that lasts a minute
    holds a coroutine, not a worker.
    """

    renderer_classes = [JSONRenderer, EventStreamRenderer]
    # The user's budget override, read with the API token in one round trip (the budget hold reads it next).
    token_reads_along = staticmethod(limits_keys)

    def prepare(self, request, *args, **kwargs):
        """Auth, the per-user rate, validation, the Idempotency-Key claim and the budget hold: one thread hop."""
        super().prepare(request, *args, **kwargs)
        if request.method != "POST":
            return  # a 405 from dispatch: nothing to claim or hold
        ratelimit_check(request, group="ai.completions", rate=_user_rate)
        self.params = completion_params(request.data)
        self.idempotency_key = request.headers.get(idempotency.HEADER, "")
        self.replayed = self.begun = None
        if self.idempotency_key:
            # A repeat with the same key and body gets the first answer without a second
            # provider call or charge, streamed or not: a stream is replayed as a short
            # stream of the recorded answer (the same `delta` and `done` events).
            self.replayed = idempotency.claim(request, self.idempotency_key)
            if self.replayed is not None:
                return
        hooks = {"on_done": self._store, "on_fail": self._release} if self.idempotency_key else {}
        try:
            self.begun = services.begin(
                request.user, self.params, stream=self.params["stream"], by_token=request.auth is not None, **hooks
            )
        except BaseException:
            if self.idempotency_key:
                self._release()  # refused before any provider call: the key may be used again
            raise

    def prepare_cancelled(self):
        """The client went away during `prepare`: no provider call will follow, so free the hold and the key."""
        if getattr(self, "begun", None) is not None:
            self.begun.booking.release()
        if getattr(self, "idempotency_key", "") and getattr(self, "replayed", None) is None:
            self._release()

    def _record(self):
        return IdempotencyRecord.objects.filter(owner=self.request.user, key=self.idempotency_key)

    def _store(self, payload):
        """The answer as the key's replay (runs inside the service's booking hop)."""
        self._record().update(
            status=IdempotencyRecord.Status.DONE,
            response_status=200,
            response_body=json.loads(json.dumps(payload, default=str)),
        )

    def _release(self):
        """Nothing replayable (a failure, a closed stream): the client may retry with the same key."""
        self._record().delete()

    @extend_schema(
        request=CompletionRequestSerializer,
        responses={
            200: OpenApiResponse(
                CompletionSerializer,
                description="The completion; with stream=true, Server-Sent Events instead: `delta` events "
                "({content}) then one `done` event carrying this object (or an `error` event). "
                "A repeat with the same Idempotency-Key replays the first answer (as a short stream when "
                "streamed), marked `Idempotent-Replayed: true`.",
            ),
        },
    )
    async def post(self, request):
        params = self.params
        if self.replayed is not None:
            body, status = self.replayed.response_body, self.replayed.response_status
            if params["stream"]:
                return await _sse_response(request, services.replay(body), **{"Idempotent-Replayed": "true"})
            return Response(body, status=status, headers={"Idempotent-Replayed": "true"})
        try:
            if params["stream"]:
                events = await services.completion_stream(
                    user=request.user, params=params, idempotency_key=self.idempotency_key, begun=self.begun
                )
                return await _sse_response(request, events)
            payload = await services.completion_create(
                user=request.user, params=params, idempotency_key=self.idempotency_key, begun=self.begun
            )
        except BaseException:
            if self.idempotency_key:
                await db_hop(self._release)
            raise
        return Response(payload)


class AiUsageView(APIView):
    """Your AI tokens and cost this month, by provider and model, against your budget."""

    @extend_schema(responses=AiUsageSerializer)
    def get(self, request):
        return Response(AiUsageSerializer(usage_for_user(owner=request.user)).data)
