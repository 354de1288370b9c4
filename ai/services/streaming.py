"""Streamed completions: SSE bytes, fallback until the first delta, the answer booked when the stream ends."""

import asyncio
import contextlib
import functools
import json
import logging
import time

from django.core.serializers.json import DjangoJSONEncoder

from integrations import aio
from integrations.aio import db_hop
from integrations.errors import ProviderError

from .. import providers
from ..models import AiRequest
from .booking import begin, cut_short, payload_for, start, walk_booked
from .cache import cache_set, cacheable
from .chain import answer_cost, attempt_timeout, tokens_first, wait_deadline

logger = logging.getLogger("ai.services")  # the name operators filter on


def sse(event, data):
    return f"event: {event}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n".encode()


class _OpenStream:
    """A provider stream that has produced its first delta (or finished): past the point of fallback.

    `stack` owns the upstream stream and the gateway attempt: leaving it closes
    the upstream, then writes the attempt's ProviderCall.
    """

    def __init__(self, provider, model, call, handle, events, first, stack):
        self.provider = provider
        self.model = model
        self.call = call
        self.handle = handle
        self.events = events
        self.first = first
        self.stack = stack


def _attempt_stream(booking, idempotency_key):
    req = booking.params["request"]

    async def attempt(provider, model, deadline, tried):
        async with contextlib.AsyncExitStack() as stack:
            call = await stack.enter_async_context(
                providers.ADAPTERS[provider].aattempt(
                    "completion.stream",
                    owner=booking.user,
                    idempotency_key=idempotency_key,
                    deadline=wait_deadline(deadline),
                    first_token=tokens_first(provider, req),
                    taken=booking.token_for(provider),
                )
            )
            seconds = attempt_timeout(provider, deadline)
            handle = None
            try:
                # Up to the first delta the walk may still fall back, so that wait is bounded by the deadline too.
                async with asyncio.timeout(seconds):
                    handle = await providers.stream(provider, model, req, timeout=seconds)
                    stack.push_async_callback(handle.aclose)
                    events = aiter(handle)
                    stack.push_async_callback(events.aclose)
                    first = await anext(events, None)
            except asyncio.CancelledError:
                # The client went away with the request sent, before any text: the provider bills its input.
                counted = handle.input_so_far() if handle is not None else None
                booking.bill(
                    call, cut_short(provider, model, req, finish_reason="client_closed", counted=counted), tried
                )
                raise
            except Exception:
                # The provider answered 200 and failed before any text: it had the prompt and bills its input
                # (OpenRouter: a 200 means "the model started processing your request"), as counted when it said
                # (Anthropic's message_start), else the hub's estimate, as for a client gone at this point. Booked
                # with the request, whichever provider answers it next.
                if handle is not None:
                    counted = handle.input_so_far()
                    booking.bill(call, cut_short(provider, model, req, finish_reason="error", counted=counted), tried)
                raise
            # From here the relay owns the upstream and the attempt.
            return _OpenStream(provider, model, call, handle, events, first, stack.pop_all())

    return attempt


def _so_far(opened, req, *, finish_reason):
    """A stream cut short after its first delta, as booked (booking.cut_short): with the text it streamed."""
    return cut_short(
        opened.provider,
        opened.model,
        req,
        finish_reason=finish_reason,
        text="".join(opened.handle.text),
        counted=opened.handle.input_so_far(),
    )


async def _relay(opened, *, booking, tried, key):
    """SSE bytes from an open provider stream: deltas, then `done` with usage and cost (or `error`)."""
    req = booking.params["request"]
    closed = None  # the GeneratorExit / CancelledError of a client that went away
    broken = None  # (what was streamed, its cost) when the provider failed mid-answer
    try:
        async with opened.stack:
            try:
                if opened.first is not None:
                    yield sse("delta", {"content": opened.first})
                async for text in opened.events:
                    yield sse("delta", {"content": text})
            except (GeneratorExit, asyncio.CancelledError) as exc:
                # The client went away: leaving the stack stops the provider. Book what it produced so far.
                closed = exc
                result = _so_far(opened, req, finish_reason="client_closed")
            except Exception:
                # The provider failed mid-answer, and bills the input and what it streamed all the same:
                # priced here, so the attempt's row (written as the error leaves the stack) carries it.
                result = _so_far(opened, req, finish_reason="error")
                broken = result, answer_cost(result)
                opened.call.record(units=result.units(), cost_usd=broken[1])
                raise
            else:
                result = opened.handle.result
            result.price_model = opened.model
            cost = answer_cost(result)
            opened.call.record(http_status=200, request_id=result.request_id, units=result.units(), cost_usd=cost)
            outcome = AiRequest.Outcome.CLIENT_CLOSED if closed is not None else AiRequest.Outcome.OK
            payload = payload_for(result, cost=cost, cached=False, fallbacks=tried)
            # Booked with the call's row when the stack closes the attempt (one hop, one commit), while
            # the `done` event goes out: the stream's end does not wait on the database.
            opened.call.then = functools.partial(
                booking.answered, result, cost=cost, tried=tried, outcome=outcome, payload=payload, call=opened.call
            )
            opened.call.then_failed = booking.abandon
            if booking.hooks_free:
                opened.call.then_at_once = functools.partial(
                    booking.answered_at_once, result, cost=cost, tried=tried, outcome=outcome, finished=time.monotonic()
                )
            opened.call.book_later = True
    except Exception as exc:  # noqa: BLE001 - after the first byte the only way to tell the client is an event
        if closed is not None:
            raise
        if isinstance(exc, ProviderError):
            logger.warning(
                "AI stream from %s failed after the first delta: %s",
                opened.provider,
                exc.api_code,
                extra={"provider": opened.provider, "model": opened.model},
            )
            body = {"error": exc.api_code, "detail": exc.detail_sentence(), "provider": exc.provider}
        else:
            logger.exception(
                "AI stream from %s failed", opened.provider, extra={"provider": opened.provider, "model": opened.model}
            )
            body = {
                "error": "server_error",
                "detail": "The hub failed while streaming; the error is logged.",
                "provider": opened.provider,
            }
        if broken is not None:
            result, cost = broken
            await db_hop(
                booking.answered,
                result,
                cost=cost,
                tried=tried,
                payload=None,
                outcome=AiRequest.Outcome.FAILED,
                error_code=body["error"],
            )
        else:
            await db_hop(
                booking.failed,
                error_code=body["error"],
                tried=tried,
                provider=opened.provider,
                model=opened.model,
                streaming=True,
            )
        yield sse("error", body)
        return
    if closed is not None:
        raise closed
    if key:
        await cache_set(key, cacheable(payload))
    yield sse("done", payload)


class _Relay:
    """The relay's SSE bytes, closable before the first read.

    An async generator that was never started runs nothing when closed, so a
    client gone between the view's return and the server's first read (while
    it sends the headers) would leave the upstream open and the budget hold
    unsettled. The server closes the response then (StreamingHttpResponse
    calls `close()`, from a thread): the relay is run to its first event and
    closed there, its own client-closed path (upstream stopped, answer booked).
    """

    def __init__(self, gen):
        self._gen = gen
        self._read = False
        self._loop = asyncio.get_running_loop()

    def __aiter__(self):
        return self

    async def __anext__(self):
        self._read = True
        return await self._gen.__anext__()

    async def aclose(self):
        if self._read:
            await self._gen.aclose()
            return
        self._read = True
        try:
            await self._gen.__anext__()  # the first delta is at hand (or the stream already ended): no wait
        except StopAsyncIteration:
            return
        await self._gen.aclose()

    def close(self):
        if self._read:
            return
        try:
            self._loop.call_soon_threadsafe(lambda: aio.track(self._loop.create_task(self.aclose())))
        except RuntimeError:  # the loop is gone: nothing left to run the close on
            logger.warning("AI stream closed unread after its event loop ended")


async def replay(payload):
    """A recorded answer as a short stream: the same `delta` and `done` events a live one ends with."""
    if payload["content"]:
        yield sse("delta", {"content": payload["content"]})
    yield sse("done", payload)


async def completion_stream(*, user, params, idempotency_key="", on_done=None, on_fail=None, begun=None):
    """Open a streamed completion. Errors before the first delta are raised (JSON
    answers, with fallback); after it, they arrive as an `error` event."""
    begun = begun or await db_hop(begin, user, params, stream=True, on_done=on_done, on_fail=on_fail)
    booking, chain, key, hit = await start(begun)
    if hit is not None:
        return replay(hit)
    opened, tried = await walk_booked(booking, chain, _attempt_stream(booking, idempotency_key))
    return _Relay(_relay(opened, booking=booking, tried=tried, key=key))
