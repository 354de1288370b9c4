"""AI completions: routing with fallback, caching, streaming, costs and budgets.

    completion_create(user=..., params=...)   -> the response dict
    completion_stream(user=..., params=...)   -> an iterator of SSE bytes

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

import contextlib
import hashlib
import json
import logging
import sys
import time
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder

from integrations import gateway, limiter
from integrations.api.errors import ApiError
from integrations.context import get_request_id, reset_request_id, set_request_id
from integrations.errors import ProviderError, ProviderNotConfigured, QuotaExceeded, RateLimited
from integrations.registry import get_provider

from . import providers
from .messages import Completion
from .models import AiRequest
from .routing import chain_for
from .usage import budget_after, budget_guard, price, usage_record

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


def walk(chain, attempt_fn, *, deadline):
    """attempt_fn(provider, model, seconds_left) for each entry until one answers; see the module docstring."""
    tried, skipped = [], []
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
            left = deadline - time.monotonic()
            if left <= 0:
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
                return attempt_fn(provider, model, left), tried
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
        # Honour Retry-After: never call a provider before it said we may.
        wait = max(seconds for _, _, seconds in again) + 0.02
        if time.monotonic() + wait >= deadline:
            break
        time.sleep(wait)
        candidates = [(p, m) for p, m, _ in again]
    raise ChainExhausted(tried, skipped)


def _take_tokens(provider, req):
    """The provider's tokens-per-minute bucket on the shared limiter (prompt estimate + the answer's cap)."""
    limit = limiter.limit_for(provider, "tokens")
    if limit is None:
        return
    cost = min(limit.burst, req.estimated_input_tokens() + (req.max_tokens or settings.AI_DEFAULT_MAX_TOKENS))
    decision = limiter.take(provider, None, bucket="tokens", cost=cost)
    if not decision.granted:
        raise RateLimited(provider, "tokens", decision.wait)


def _timeout(provider, seconds_left):
    return max(0.1, min(gateway.timeout_for(provider), seconds_left))


def _cost(result):
    return price(
        result.provider,
        result.price_model or result.model,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cached_tokens=result.cached_tokens,
    )


def _attempt_complete(user, req, idempotency_key):
    def attempt(provider, model, seconds_left):
        _take_tokens(provider, req)
        with gateway.attempt(provider, "completion", owner=user, idempotency_key=idempotency_key) as call:
            result = providers.complete(provider, model, req, timeout=_timeout(provider, seconds_left))
            result.price_model = model
            cost = _cost(result)
            call.record(http_status=200, request_id=result.request_id, units=result.units(), cost_usd=cost)
        return result, cost

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


# --- results -------------------------------------------------------------------


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


def _log(*, user, params, outcome, started, result=None, cost=0, fallbacks=(), error_code="", stream=False):
    log_prompts = settings.AI_LOG_PROMPTS
    return AiRequest.objects.create(
        owner=user,
        request_id=(get_request_id() or "")[:128],
        task=params.get("task") or "",
        requested_model=(params.get("model") or "")[:128],
        provider=result.provider if result else "",
        model=(result.model if result else "")[:128],
        stream=stream,
        outcome=outcome,
        error_code=error_code[:64],
        finish_reason=(result.finish_reason if result else "")[:32],
        input_tokens=result.input_tokens if result and outcome != AiRequest.Outcome.CACHED else 0,
        output_tokens=result.output_tokens if result and outcome != AiRequest.Outcome.CACHED else 0,
        cached_tokens=result.cached_tokens if result and outcome != AiRequest.Outcome.CACHED else 0,
        cost_usd=cost,
        latency_ms=round((time.monotonic() - started) * 1000, 3),
        fallbacks=list(fallbacks),
        prompt=params["request"].canonical() if log_prompts else None,
        response_text=(result.content if result else "") if log_prompts else "",
    )


def _finish(*, user, params, result, cost, tried, limit, spent, started, key, stream=False):
    """Book a fresh answer: roll-up, budget alert, cache, request log."""
    usage_record(
        owner_id=user.pk,
        provider=result.provider,
        model=result.model,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cached_tokens=result.cached_tokens,
        cost_usd=cost,
    )
    budget_after(user.pk, limit=limit, before=spent, cost=cost)
    payload = _payload(result, cost=cost, cached=False, fallbacks=tried)
    if key:
        cache.set(
            key,
            {k: v for k, v in payload.items() if k not in ("cached", "fallbacks", "cost_usd")},
            settings.AI_CACHE_TTL_SECONDS,
        )
    _log(
        user=user,
        params=params,
        outcome=AiRequest.Outcome.OK,
        started=started,
        result=result,
        cost=cost,
        fallbacks=tried,
        stream=stream,
    )
    return payload


def _cached(user, params, key, started, stream=False):
    hit = cache.get(key) if key else None
    if hit is None:
        return None
    result = Completion(
        provider=hit["provider"],
        model=hit["model"],
        content=hit["content"],
        tool_calls=hit["tool_calls"],
        finish_reason=hit["finish_reason"],
    )
    usage_record(owner_id=user.pk, provider=result.provider, model=result.model, cached=True)
    _log(user=user, params=params, outcome=AiRequest.Outcome.CACHED, started=started, result=result, stream=stream)
    # Nothing was sent to a provider: no tokens, no cost.
    return _payload(result, cost=0, cached=True, fallbacks=[])


def _api_error(exc, *, user, params, started, stream=False):
    """The JSON error for a chain that did not answer (and its request log row)."""
    if isinstance(exc, ChainRefused):
        error = exc.error.as_api_error()
        error.extra["tried"] = exc.tried
        _log(
            user=user,
            params=params,
            outcome=AiRequest.Outcome.FAILED,
            started=started,
            fallbacks=exc.tried,
            error_code=exc.error.api_code,
            stream=stream,
        )
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
    _log(
        user=user,
        params=params,
        outcome=AiRequest.Outcome.FAILED,
        started=started,
        fallbacks=exc.tried,
        error_code=code,
        stream=stream,
    )
    return ApiError(503, code, detail, headers=headers, tried=exc.tried, skipped=exc.skipped)


def completion_create(*, user, params, idempotency_key=""):
    started = time.monotonic()
    req = params["request"]
    chain = chain_for(task=params.get("task"), model=params.get("model"), provider=params.get("provider"))
    key = cache_key(owner_id=user.pk, params=params) if use_cache(params) else None
    hit = _cached(user, params, key, started)
    if hit is not None:
        return hit
    limit, spent = budget_guard(user.pk)
    try:
        (result, cost), tried = walk(
            chain, _attempt_complete(user, req, idempotency_key), deadline=started + settings.AI_DEADLINE_SECONDS
        )
    except (ChainExhausted, ChainRefused) as exc:
        raise _api_error(exc, user=user, params=params, started=started) from None
    return _finish(
        user=user,
        params=params,
        result=result,
        cost=cost,
        tried=tried,
        limit=limit,
        spent=spent,
        started=started,
        key=key,
    )


# --- streaming -------------------------------------------------------------------


def sse(event, data):
    return f"event: {event}\ndata: {json.dumps(data, cls=DjangoJSONEncoder)}\n\n".encode()


class _OpenStream:
    """A provider stream that has produced its first delta (or finished): past the point of fallback."""

    def __init__(self, provider, model, attempt_cm, call, handle, events, first):
        self.provider = provider
        self.model = model
        self.attempt_cm = attempt_cm
        self.call = call
        self.handle = handle
        self.events = events
        self.first = first
        self.exited = False

    def close_upstream(self):
        self.events.close()
        self.handle.close()

    def exit_attempt(self, exc=None):
        """Close the gateway attempt (writes its ProviderCall); returns the error it leaves with, if any."""
        if self.exited:
            return exc
        self.exited = True
        if exc is None:
            self.attempt_cm.__exit__(None, None, None)
            return None
        try:
            self.attempt_cm.__exit__(type(exc), exc, exc.__traceback__)
        except BaseException as translated:  # noqa: BLE001 - the gateway re-raises what it recorded
            return translated
        return exc


def _attempt_stream(user, req, idempotency_key):
    def attempt(provider, model, seconds_left):
        _take_tokens(provider, req)
        cm = gateway.attempt(provider, "completion.stream", owner=user, idempotency_key=idempotency_key)
        call = cm.__enter__()
        try:
            handle = providers.stream(provider, model, req, timeout=_timeout(provider, seconds_left))
            events = iter(handle)
            try:
                first = next(events, None)
            except BaseException:
                handle.close()
                raise
        except BaseException:
            if not cm.__exit__(*sys.exc_info()):
                raise
            raise
        return _OpenStream(provider, model, cm, call, handle, events, first)

    return attempt


@contextlib.contextmanager
def _request_id(value):
    token = set_request_id(value)
    try:
        yield
    finally:
        reset_request_id(token)


def _relay(opened, *, user, params, tried, limit, spent, started, key, request_id):
    """SSE bytes from an open provider stream: deltas, then `done` with usage and cost (or `error`)."""
    req = params["request"]
    finished = False
    try:
        if opened.first is not None:
            yield sse("delta", {"content": opened.first})
        for text in opened.events:
            yield sse("delta", {"content": text})
        result = opened.handle.result
        result.price_model = opened.model
        cost = _cost(result)
        with _request_id(request_id):
            opened.call.record(http_status=200, request_id=result.request_id, units=result.units(), cost_usd=cost)
            opened.exit_attempt()
            payload = _finish(
                user=user,
                params=params,
                result=result,
                cost=cost,
                tried=tried,
                limit=limit,
                spent=spent,
                started=started,
                key=key,
                stream=True,
            )
        finished = True
        yield sse("done", payload)
    except GeneratorExit:
        if not finished:
            # The client went away: stop the provider, and book what it has
            # produced so far (estimated; the provider's usage never arrived).
            opened.close_upstream()
            partial = Completion(
                provider=opened.provider,
                model=opened.model,
                content="".join(opened.handle.text),
                tool_calls=[],
                finish_reason="client_closed",
                input_tokens=req.estimated_input_tokens(),
                output_tokens=len("".join(opened.handle.text)) // 4,
            )
            partial.price_model = opened.model
            cost = _cost(partial)
            with _request_id(request_id):
                opened.call.record(http_status=200, units=partial.units(), cost_usd=cost)
                opened.exit_attempt()
                usage_record(
                    owner_id=user.pk,
                    provider=partial.provider,
                    model=partial.model,
                    input_tokens=partial.input_tokens,
                    output_tokens=partial.output_tokens,
                    cost_usd=cost,
                )
                budget_after(user.pk, limit=limit, before=spent, cost=cost)
                _log(
                    user=user,
                    params=params,
                    outcome=AiRequest.Outcome.CLIENT_CLOSED,
                    started=started,
                    result=partial,
                    cost=cost,
                    fallbacks=tried,
                    stream=True,
                )
        raise
    except Exception as exc:  # noqa: BLE001 - after the first byte the only way to tell the client is an event
        opened.close_upstream()
        with _request_id(request_id):
            error = opened.exit_attempt(exc)
            if isinstance(error, ProviderError):
                body = {"error": error.api_code, "detail": error.detail_sentence(), "provider": error.provider}
            else:
                logger.exception("AI stream failed")
                body = {"error": "server_error", "detail": "The hub failed while streaming; the error is logged."}
            _log(
                user=user,
                params=params,
                outcome=AiRequest.Outcome.FAILED,
                started=started,
                fallbacks=tried,
                error_code=body["error"],
                stream=True,
            )
        yield sse("error", body)
    finally:
        if not opened.exited:
            opened.close_upstream()


def _replay(payload):
    if payload["content"]:
        yield sse("delta", {"content": payload["content"]})
    yield sse("done", payload)


def completion_stream(*, user, params, idempotency_key=""):
    """Open a streamed completion. Errors before the first delta are raised (JSON
    answers, with fallback); after it, they arrive as an `error` event."""
    started = time.monotonic()
    req = params["request"]
    chain = chain_for(task=params.get("task"), model=params.get("model"), provider=params.get("provider"))
    key = cache_key(owner_id=user.pk, params=params) if use_cache(params) else None
    hit = _cached(user, params, key, started, stream=True)
    if hit is not None:
        return _replay(hit)
    limit, spent = budget_guard(user.pk)
    try:
        opened, tried = walk(
            chain, _attempt_stream(user, req, idempotency_key), deadline=started + settings.AI_DEADLINE_SECONDS
        )
    except (ChainExhausted, ChainRefused) as exc:
        raise _api_error(exc, user=user, params=params, started=started, stream=True) from None
    return _relay(
        opened,
        user=user,
        params=params,
        tried=tried,
        limit=limit,
        spent=spent,
        started=started,
        key=key,
        request_id=get_request_id(),
    )
