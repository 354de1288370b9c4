"""The route's chain of (provider, model): walked with fallback, each attempt bounded by the request's deadline."""

import asyncio
import time

from django.conf import settings

from integrations import gateway, limiter
from integrations.errors import ContextTooLong, ProviderError, ProviderNotConfigured, QuotaExceeded
from integrations.registry import get_provider

from ..usage import price

# Permanent errors that are about the provider rather than the request: its account (401, 403), or the model or
# API it no longer serves (OpenAI's 404 model_not_found for a retired model; 410 Gone, "likely permanent" in HTTP's
# words, as GitHub Models answers since its retirement). Another provider may well answer, this one will not.
_ACCOUNT_STATUSES = {401, 403, 404, 410}


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
    # A prompt too long for one model's context window may fit the next model's.
    return exc.retryable or isinstance(exc, (QuotaExceeded, ContextTooLong)) or exc.http_status in _ACCOUNT_STATUSES


def _account_refused(exc):
    """Out of credit, the key refused, or the API gone: so is every other model of this provider on the route.

    410 Gone is about the API (GitHub Models answers it to every request since GitHub retired the service);
    vendors say a model they do not serve with a 404 (OpenAI's model_not_found, Anthropic's not_found_error),
    after which another of their models may well answer."""
    return isinstance(exc, QuotaExceeded) or exc.http_status in (401, 410)


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
    refused = set()  # providers whose account refused: not asked again for another model
    too_long = None  # the last refusal of the prompt's length
    for pass_no in (1, 2):
        again = []
        for provider, model in candidates:
            if provider in refused:
                continue
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
                if _account_refused(exc):
                    refused.add(provider)
                if isinstance(exc, ContextTooLong):
                    too_long = exc
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
    if too_long is not None and all(t["error"] == ContextTooLong.api_code for t in tried):
        # Every model asked refused the prompt's length: the request's problem (400), not a passing outage.
        raise ChainRefused(too_long, tried)
    raise ChainExhausted(tried, skipped)


def wait_deadline(deadline):
    """How long an attempt may await a rate token: briefly, since the next provider may answer at once."""
    return min(deadline, time.monotonic() + settings.AI_RETRY_WAIT_MAX_SECONDS)


def tokens_first(provider, req):
    """The provider's tokens-per-minute bucket on the shared limiter (prompt estimate + the answer's cap), as
    the attempt's `first_token` (taken before its request token, in the same round trip); None: not limited."""
    limit = limiter.limit_for(provider, "tokens")
    if limit is None:
        return None
    return "tokens", min(limit.burst, req.estimated_input_tokens() + (req.max_tokens or settings.AI_DEFAULT_MAX_TOKENS))


def attempt_timeout(provider, deadline):
    return max(0.1, min(gateway.timeout_for(provider), deadline - time.monotonic()))


def answer_cost(result):
    if result.provider_cost_usd is not None:
        return result.provider_cost_usd  # what the provider charged, where the price table only estimates it
    return price(
        result.provider,
        result.price_model or result.model,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cached_tokens=result.cached_tokens,
        cache_write_tokens=result.cache_write_tokens,
        cache_write_1h_tokens=result.cache_write_1h_tokens,
    )
