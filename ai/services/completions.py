"""Non-streamed completions: one answer as a dict."""

import asyncio
import functools
import time

from integrations.aio import db_hop

from .. import providers
from .booking import begin, cut_short, payload_for, start, walk_booked
from .cache import cache_set, cacheable
from .chain import answer_cost, attempt_timeout, tokens_first, wait_deadline


def _attempt_complete(booking, idempotency_key):
    req = booking.params["request"]

    async def attempt(provider, model, deadline, tried):
        async with providers.ADAPTERS[provider].aattempt(
            "completion",
            owner=booking.user,
            idempotency_key=idempotency_key,
            deadline=wait_deadline(deadline),
            first_token=tokens_first(provider, req),
            taken=booking.token_for(provider),
        ) as call:
            # The SDK's timeout bounds each read; this bounds the whole answer by the request's deadline.
            seconds = attempt_timeout(provider, deadline)
            try:
                async with asyncio.timeout(seconds):
                    result = await providers.complete(provider, model, req, timeout=seconds)
            except asyncio.CancelledError:
                # The client went away with the request sent: the provider bills its input all the same.
                booking.bill(call, cut_short(provider, model, req, finish_reason="client_closed"), tried)
                raise
            result.price_model = model
            cost = answer_cost(result)
            call.record(http_status=200, request_id=result.request_id, units=result.units(), cost_usd=cost)
            payload = payload_for(result, cost=cost, cached=False, fallbacks=list(tried))
            # Booked with the call's row (one round trip, one commit) while the answer goes out: the client does
            # not wait on the database (the worker's batch writer, gateway.bookings; else aio.in_background).
            call.then = functools.partial(
                booking.answered, result, cost=cost, tried=list(tried), payload=payload, call=call
            )
            call.then_failed = booking.abandon
            if booking.hooks_free:
                call.then_at_once = functools.partial(
                    booking.answered_at_once, result, cost=cost, tried=list(tried), finished=time.monotonic()
                )
            call.book_later = True
        return payload

    return attempt


async def completion_create(*, user, params, idempotency_key="", on_done=None, on_fail=None, begun=None):
    """One answer as a dict.

    `on_done(payload)` runs in the thread hop that books the answer (the view
    stores its idempotent replay there); `on_fail()` when a stream that had
    started ends without an answer; `begun`, the request as the caller's own
    thread hop began it (booking.begin). An exception raised from here is the
    caller's to clean up after."""
    begun = begun or await db_hop(begin, user, params, stream=False, on_done=on_done, on_fail=on_fail)
    booking, chain, key, hit = await start(begun)
    if hit is not None:
        return hit
    payload, _ = await walk_booked(booking, chain, _attempt_complete(booking, idempotency_key))
    if key:
        await cache_set(key, cacheable(payload))
    return payload
