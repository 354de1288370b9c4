"""AI completions: routing with fallback, caching, streaming, costs and budgets.

    await completion_create(user=..., params=...)   -> the response dict
    await completion_stream(user=..., params=...)   -> an async iterator of SSE bytes

Async end to end: these run on the event loop of an ASGI worker, where one
blocking call would stall every other open stream. Provider calls use the
SDKs' async clients, the limiter, breaker and answer cache the asyncio Redis
client, and each group of database writes one hop to a thread
(`sync_to_async`), never the loop. Nothing here sleeps: a rate token or a
provider's Retry-After is awaited only when the wait ends before the request's
deadline; otherwise the walk moves on to the next provider, or the client gets
503 with Retry-After.

`params` is the validated request (serializers.CompletionRequestSerializer).
Both walk the route's chain of (provider, model): unconfigured providers are
skipped; retryable failures (429, 5xx, timeouts, open circuit, our own
limiter) fall through to the next entry; quota and auth failures (the
provider's account, not the request) fall through too and that provider is
not tried again; any other permanent failure (a bad request) ends the walk,
since another provider would refuse it the same way. When every entry failed,
those that named a short Retry-After are tried once more after it, if the
deadline allows. Every attempt is one gateway attempt (one ProviderCall).
"""

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import time
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from integrations import gateway, limiter
from integrations.aio import commit_without_flush_wait, db_hop
from integrations.context import get_request_id
from integrations.errors import DomainError, ProviderError, ProviderNotConfigured, QuotaExceeded
from integrations.redis import aget_client
from integrations.redis import key as redis_key
from integrations.registry import get_provider

from . import providers
from .messages import Completion
from .models import AiRequest
from .routing import chain_for
from .usage import budget_after, budget_reserve, budget_settle, max_cost, price, priced_chain, usage_record, user_limits

logger = logging.getLogger(__name__)

# Permanent errors that are about the provider account rather than the
# request: another provider may well answer, this one will not.
_ACCOUNT_STATUSES = {401, 403, 404}


class ChainExhausted(Exception):
    def __init__(self, tried, skipped):
        super().__init__("no provider answered")
        self.tried = tried
        self.skipped = skipped


class ChainRefused(Exception):
    def __init__(self, error, tried):
        super().__init__(str(error))
        self.error = error
        self.tried = tried


def _why(provider, model, exc):
    entry = {"provider": provider, "model": model, "error": exc.api_code, "detail": exc.detail_sentence()}
    if exc.http_status:
        entry["http_status"] = exc.http_status
    if exc.code:
        entry["provider_code"] = exc.code
    if exc.retry_after:
        entry["retry_after"] = round(exc.retry_after, 3)
    return entry


def _falls_through(exc):
    return exc.retryable or isinstance(exc, QuotaExceeded) or exc.http_status in _ACCOUNT_STATUSES


async def walk(chain, attempt_fn, *, deadline, skipped=()):
    """await attempt_fn(provider, model, deadline, tried) for each entry until one answers; see the module docstring."""
    tried, skipped = [], list(skipped)
    candidates = []
    for provider, model in chain:
        missing = get_provider(provider).missing()
        if missing:
            skipped.append(
                {"provider": provider, "model": model, "error": "provider_not_configured", "missing": missing}
            )
        else:
            candidates.append((provider, model))
    for pass_no in (1, 2):
        again = []
        for provider, model in candidates:
            if deadline - time.monotonic() <= 0:
                tried.append(
                    {
                        "provider": provider,
                        "model": model,
                        "error": "deadline",
                        "detail": "The request's deadline passed.",
                    }
                )
                break
            try:
                return await attempt_fn(provider, model, deadline, tried), tried
            except ProviderNotConfigured as exc:
                skipped.append({"provider": provider, "model": model, "error": exc.api_code, "missing": exc.missing})
            except ProviderError as exc:
                tried.append(_why(provider, model, exc))
                if not _falls_through(exc):
                    raise ChainRefused(exc, tried) from exc
                if exc.retryable and exc.retry_after and exc.retry_after <= settings.AI_RETRY_WAIT_MAX_SECONDS:
                    again.append((provider, model, exc.retry_after))
        if pass_no == 2 or not again:
            break
        # Honour Retry-After: never call a provider before it said we may. An
        # await, not a sleep: the worker serves other requests meanwhile.
        wait = max(seconds for _, _, seconds in again) + 0.02
        if time.monotonic() + wait >= deadline:
            break
        await asyncio.sleep(wait)
        candidates = [(p, m) for p, m, _ in again]
    raise ChainExhausted(tried, skipped)


def _wait_deadline(deadline):
    """How long an attempt may await a rate token: briefly, since the next provider may answer at once."""
    return min(deadline, time.monotonic() + settings.AI_RETRY_WAIT_MAX_SECONDS)


async def _take_tokens(provider, req, deadline):
    """The provider's tokens-per-minute bucket on the shared limiter (prompt estimate + the answer's cap)."""
    limit = limiter.limit_for(provider, "tokens")
    if limit is None:
        return
    cost = min(limit.burst, req.estimated_input_tokens() + (req.max_tokens or settings.AI_DEFAULT_MAX_TOKENS))
    await gateway.atake_token(provider, None, bucket="tokens", cost=cost, deadline=_wait_deadline(deadline))


def _timeout(provider, deadline):
    return max(0.1, min(gateway.timeout_for(provider), deadline - time.monotonic()))


def _cost(result):
    return price(
        result.provider,
        result.price_model or result.model,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cached_tokens=result.cached_tokens,
    )


def _attempt_complete(booking, idempotency_key):
    req = booking.params["request"]

    async def attempt(provider, model, deadline, tried):
        await _take_tokens(provider, req, deadline)
        async with gateway.aattempt(
            provider,
            "completion",
            owner=booking.user,
            idempotency_key=idempotency_key,
            deadline=_wait_deadline(deadline),
        ) as call:
            # The SDK's timeout bounds each read; this bounds the whole answer by the request's deadline.
            seconds = _timeout(provider, deadline)
            async with asyncio.timeout(seconds):
                result = await providers.complete(provider, model, req, timeout=seconds)
            result.price_model = model
            cost = _cost(result)
            call.record(http_status=200, request_id=result.request_id, units=result.units(), cost_usd=cost)
            # Booked with the call's row: one thread hop and one commit for both.
            call.then = functools.partial(booking.answered, result, cost=cost, tried=list(tried))
        return call.then_result

    return attempt


# --- caching -------------------------------------------------------------------


def use_cache(params):
    if params.get("cache") is False:
        return False
    return params.get("cache") is True or params["request"].temperature == 0


def cache_key(*, owner_id, params):
    """A digest of everything that decides the answer. Never key material: the
    provider keys are not part of it, and the user appears only by id (answers
    are not shared between users, so a cache hit reveals nobody else's prompt)."""
    blob = json.dumps(
        {
            "v": 1,
            "owner": owner_id,
            "task": params.get("task") or "",
            "model": params.get("model") or "",
            "provider": params.get("provider") or "",
            **params["request"].canonical(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return "ai:completion:" + hashlib.sha256(blob.encode()).hexdigest()


async def _cache_get(key):
    client = aget_client()
    if client is None:
        return await cache.aget(key)
    raw = await client.get(redis_key(key))
    return json.loads(raw) if raw else None


async def _cache_set(key, value):
    if settings.AI_CACHE_TTL_SECONDS <= 0:
        return  # a TTL of 0 keeps nothing, as with Django's cache
    client = aget_client()
    if client is None:
        await cache.aset(key, value, settings.AI_CACHE_TTL_SECONDS)
        return
    await client.set(redis_key(key), json.dumps(value, cls=DjangoJSONEncoder), ex=settings.AI_CACHE_TTL_SECONDS)


def _cacheable(payload):
    return {k: v for k, v in payload.items() if k not in ("cached", "fallbacks", "cost_usd")}


# --- results (the database work: each function runs in one thread hop) ------------


def _payload(result, *, cost, cached, fallbacks):
    return {
        "provider": result.provider,
        "model": result.model,
        "content": result.content,
        "tool_calls": result.tool_calls,
        "finish_reason": result.finish_reason,
        "usage": {
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "cached_tokens": result.cached_tokens,
        },
        "cost_usd": str(Decimal(cost).quantize(Decimal("0.000001"))),
        "cached": cached,
        "fallbacks": fallbacks,
    }


def _log(
    *,
    user,
    params,
    outcome,
    started,
    result=None,
    cost=0,
    fallbacks=(),
    error_code="",
    stream=False,
    provider="",
    model="",
):
    log_prompts = settings.AI_LOG_PROMPTS
    counted = result is not None and outcome != AiRequest.Outcome.CACHED
    return AiRequest.objects.create(
        owner=user,
        request_id=(get_request_id() or "")[:128],
        task=params.get("task") or "",
        requested_model=(params.get("model") or "")[:128],
        provider=result.provider if result else provider,
        model=(result.model if result else model)[:128],
        stream=stream,
        outcome=outcome,
        error_code=error_code[:64],
        finish_reason=(result.finish_reason if result else "")[:32],
        input_tokens=result.input_tokens if counted else 0,
        output_tokens=result.output_tokens if counted else 0,
        cached_tokens=result.cached_tokens if counted else 0,
        cost_usd=cost,
        latency_ms=round((time.monotonic() - started) * 1000, 3),
        fallbacks=list(fallbacks),
        prompt=params["request"].canonical() if log_prompts else None,
        response_text=(result.content if result else "") if log_prompts else "",
    )


class _Booking:
    """What a request knows before its answer: who, what, when, and its hold on the budget."""

    def __init__(self, *, user, params, started, stream, on_done=None, on_fail=None):
        self.user = user
        self.params = params
        self.started = started
        self.stream = stream
        self.on_done = on_done  # called with the final payload, in the booking's thread hop
        self.on_fail = on_fail
        self.reservation = None

    def reserve(self, chain):
        """Cap the answer's length, drop unpriced models, and hold the request's largest cost.

        Returns the chain to walk and the entries left out of it."""
        limit, cap = user_limits(self.user.pk)
        req = self.params["request"]
        if req.max_tokens and req.max_tokens > cap:
            raise DomainError(
                400,
                "max_tokens_over_limit",
                f"max_tokens may be at most {cap} for your account; ask an administrator for more.",
                max_tokens_limit=cap,
            )
        # Every provider gets a cap, so the largest possible cost is known.
        req.max_tokens = req.max_tokens or min(settings.AI_DEFAULT_MAX_TOKENS, cap)
        chain, skipped = priced_chain(chain, named=bool(self.params.get("model")))
        amount = max_cost(chain, input_tokens=req.estimated_input_tokens(), output_tokens=req.max_tokens)
        with transaction.atomic():
            commit_without_flush_wait()  # a lost hold only frees budget; the client waits on this commit
            self.reservation = budget_reserve(self.user.pk, amount, limit=limit)
        return chain, skipped

    def release(self):
        budget_settle(self.reservation, 0)

    @transaction.atomic(savepoint=False)  # inside the gateway's savepoint for it: one is enough
    def answered(self, result, *, cost, tried, outcome=AiRequest.Outcome.OK):
        """Book an answer (or a stream the client closed): roll-up, budget, request log (one commit)."""
        usage_record(
            owner_id=self.user.pk,
            provider=result.provider,
            model=result.model,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cached_tokens=result.cached_tokens,
            cost_usd=cost,
        )
        budget_settle(self.reservation, cost)
        if self.reservation is not None:
            budget_after(self.user.pk, limit=self.reservation.limit, before=self.reservation.spent, cost=cost)
        _log(
            user=self.user,
            params=self.params,
            outcome=outcome,
            started=self.started,
            result=result,
            cost=cost,
            fallbacks=tried,
            stream=self.stream,
        )
        if outcome != AiRequest.Outcome.OK:
            self._failed()
            return None
        payload = _payload(result, cost=cost, cached=False, fallbacks=tried)
        if self.on_done:
            self.on_done(payload)
        return payload

    @transaction.atomic
    def cached(self, hit):
        result = Completion(
            provider=hit["provider"],
            model=hit["model"],
            content=hit["content"],
            tool_calls=hit["tool_calls"],
            finish_reason=hit["finish_reason"],
        )
        usage_record(owner_id=self.user.pk, provider=result.provider, model=result.model, cached=True)
        _log(
            user=self.user,
            params=self.params,
            outcome=AiRequest.Outcome.CACHED,
            started=self.started,
            result=result,
            stream=self.stream,
        )
        # Nothing was sent to a provider: no tokens, no cost.
        payload = _payload(result, cost=0, cached=True, fallbacks=[])
        if self.on_done:
            self.on_done(payload)
        return payload

    @transaction.atomic
    def failed(self, *, error_code, tried, provider="", model="", streaming=False):
        _log(
            user=self.user,
            params=self.params,
            outcome=AiRequest.Outcome.FAILED,
            started=self.started,
            fallbacks=tried,
            error_code=error_code,
            stream=self.stream,
            provider=provider,
            model=model,
        )
        self.release()
        if streaming:
            self._failed()  # before the stream, the caller sees the exception itself

    def _failed(self):
        if self.on_fail:
            self.on_fail()

    def chain_failed(self, exc):
        """The JSON error for a chain that did not answer (and its request log row)."""
        if isinstance(exc, ChainRefused):
            error = exc.error.as_api_error()
            error.extra["tried"] = exc.tried
            self.failed(error_code=exc.error.api_code, tried=exc.tried)
            return error
        waits = [t["retry_after"] for t in exc.tried if t.get("retry_after")]
        headers = {"Retry-After": str(int(min(waits) + 0.999))} if waits else {}
        if exc.tried:
            code = "ai_unavailable"
            detail = (
                "No AI provider could answer: "
                + "; ".join(f"{t['provider']} ({t['error']})" for t in exc.tried)
                + ". Try again later."
            )
        else:
            code = "ai_not_configured"
            detail = (
                "No AI provider on this route is configured; set the API key of one of: "
                + ", ".join(sorted({s["provider"] for s in exc.skipped}))
                + "."
            )
        self.failed(error_code=code, tried=exc.tried)
        return DomainError(503, code, detail, headers=headers, tried=exc.tried, skipped=exc.skipped)


async def _start(user, params, *, stream, on_done, on_fail):
    started = time.monotonic()
    chain = chain_for(task=params.get("task"), model=params.get("model"), provider=params.get("provider"))
    booking = _Booking(user=user, params=params, started=started, stream=stream, on_done=on_done, on_fail=on_fail)
    key = cache_key(owner_id=user.pk, params=params) if use_cache(params) else None
    hit = await _cache_get(key) if key else None
    if hit is not None:
        return booking, None, key, await db_hop(booking.cached, hit)
    # From here the request holds part of the budget: every way out settles it.
    return booking, await db_hop(booking.reserve, chain), key, None


async def _walk(booking, chain_and_skipped, attempt_fn):
    chain, skipped = chain_and_skipped
    deadline = booking.started + settings.AI_DEADLINE_SECONDS
    try:
        return await walk(chain, attempt_fn, deadline=deadline, skipped=skipped)
    except (ChainExhausted, ChainRefused) as exc:
        raise await db_hop(booking.chain_failed, exc) from None
    except BaseException:
        await db_hop(booking.release)
        raise


async def completion_create(*, user, params, idempotency_key="", on_done=None, on_fail=None):
    """One answer as a dict.

    `on_done(payload)` runs in the thread hop that books the answer (the view
    stores its idempotent replay there); `on_fail()` when a stream that had
    started ends without an answer. An exception raised from here is the
    caller's to clean up after."""
    booking, chain, key, hit = await _start(user, params, stream=False, on_done=on_done, on_fail=on_fail)
    if hit is not None:
        return hit
    payload, _ = await _walk(booking, chain, _attempt_complete(booking, idempotency_key))
    if key:
        await _cache_set(key, _cacheable(payload))
    return payload


# --- streaming -------------------------------------------------------------------


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


def _attempt_stream(user, req, idempotency_key):
    async def attempt(provider, model, deadline, tried):
        await _take_tokens(provider, req, deadline)
        async with contextlib.AsyncExitStack() as stack:
            call = await stack.enter_async_context(
                gateway.aattempt(
                    provider,
                    "completion.stream",
                    owner=user,
                    idempotency_key=idempotency_key,
                    deadline=_wait_deadline(deadline),
                )
            )
            seconds = _timeout(provider, deadline)
            # Up to the first delta the walk may still fall back, so that wait is bounded by the deadline too.
            async with asyncio.timeout(seconds):
                handle = await providers.stream(provider, model, req, timeout=seconds)
                stack.push_async_callback(handle.aclose)
                events = aiter(handle)
                stack.push_async_callback(events.aclose)
                first = await anext(events, None)
            # From here the relay owns the upstream and the attempt.
            return _OpenStream(provider, model, call, handle, events, first, stack.pop_all())

    return attempt


async def _relay(opened, *, booking, tried, key):
    """SSE bytes from an open provider stream: deltas, then `done` with usage and cost (or `error`)."""
    req = booking.params["request"]
    closed = None  # the GeneratorExit / CancelledError of a client that went away
    try:
        async with opened.stack:
            try:
                if opened.first is not None:
                    yield sse("delta", {"content": opened.first})
                async for text in opened.events:
                    yield sse("delta", {"content": text})
            except (GeneratorExit, asyncio.CancelledError) as exc:
                # The client went away: leaving the stack stops the provider.
                # Book what it produced so far (estimated: its usage never came).
                closed = exc
                text = "".join(opened.handle.text)
                result = Completion(
                    provider=opened.provider,
                    model=opened.model,
                    content=text,
                    tool_calls=[],
                    finish_reason="client_closed",
                    input_tokens=req.estimated_input_tokens(),
                    output_tokens=len(text) // 4,
                )
            else:
                result = opened.handle.result
            result.price_model = opened.model
            cost = _cost(result)
            opened.call.record(http_status=200, request_id=result.request_id, units=result.units(), cost_usd=cost)
            outcome = AiRequest.Outcome.CLIENT_CLOSED if closed is not None else AiRequest.Outcome.OK
            # Booked with the call's row when the stack closes the attempt: one hop, one commit.
            opened.call.then = functools.partial(booking.answered, result, cost=cost, tried=tried, outcome=outcome)
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
    payload = opened.call.then_result
    if key:
        await _cache_set(key, _cacheable(payload))
    yield sse("done", payload)


async def replay(payload):
    """A recorded answer as a short stream: the same `delta` and `done` events a live one ends with."""
    if payload["content"]:
        yield sse("delta", {"content": payload["content"]})
    yield sse("done", payload)


async def completion_stream(*, user, params, idempotency_key="", on_done=None, on_fail=None):
    """Open a streamed completion. Errors before the first delta are raised (JSON
    answers, with fallback); after it, they arrive as an `error` event."""
    booking, chain, key, hit = await _start(user, params, stream=True, on_done=on_done, on_fail=on_fail)
    if hit is not None:
        return replay(hit)
    opened, tried = await _walk(booking, chain, _attempt_stream(user, params["request"], idempotency_key))
    return _relay(opened, booking=booking, tried=tried, key=key)
