"""The AI call wrapper (integrations.providers' contract) and the one translation of the SDKs' errors."""

import anthropic
import openai

from integrations.errors import (
    ContextTooLong,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    QuotaExceeded,
    error_from_http,
    parse_retry_after,
)
from integrations.providers import ProviderAdapter

_STATUS_ERRORS = (openai.APIStatusError, anthropic.APIStatusError)
_TIMEOUTS = (openai.APITimeoutError, anthropic.APITimeoutError)
_CONNECTION = (openai.APIConnectionError, anthropic.APIConnectionError)
_SDK_ERRORS = (openai.OpenAIError, anthropic.AnthropicError)

# Anthropic refusals about the account rather than the request. Out of prepaid credit and past the workspace's
# own usage limit are 400 invalid_request_errors that only their message tells apart; the tier's monthly
# threshold and a contract's spend limit are 429 rate_limit_errors named by `error.details.error_code`.
_ANTHROPIC_SPEND_CODES = frozenset({"enforced_spend_limit_reached", "contract_spend_limit_reached"})
_ANTHROPIC_CREDIT_MESSAGES = ("credit balance is too low", "reached your specified api usage limits")
# OpenRouter's 403 for a spent key limit, workspace or guardrail budget names it in error.metadata.limit_source.
_OPENROUTER_BUDGETS = frozenset({"openrouter_key_limit", "openrouter_workspace_budget", "openrouter_guardrail_budget"})
# A prompt longer than the model's context window: OpenAI's code, GitHub Models' (Azure's) 413, and the words of
# Anthropic ("prompt is too long"), Gemini ("The input token count (N) exceeds the maximum number of tokens
# allowed"), OpenRouter and OpenAI ("maximum context length") and xAI ("maximum prompt length", now
# "[input_too_large]").
_CONTEXT_CODES = frozenset({"context_length_exceeded", "tokens_limit_reached"})
_CONTEXT_MESSAGES = (
    "prompt is too long",
    "exceeds the maximum number of tokens allowed",
    "maximum context length",
    "maximum prompt length",
    "[input_too_large]",
)
# The HTTP status each Anthropic error type is sent with (docs "Errors"), for an error event in a 200 stream.
_ANTHROPIC_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def translate(provider, exc):
    """The hub's error for a vendor SDK exception."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, _TIMEOUTS):
        return ProviderTimeout(provider, "timed out")
    if isinstance(exc, _CONNECTION):
        return ProviderUnavailable(provider, f"connection failed ({exc.message})")
    if isinstance(exc, _STATUS_ERRORS):
        body = exc.body
        if isinstance(body, list) and body and isinstance(body[0], dict):
            body = body[0].get("error", body[0])  # Gemini's compatible endpoint answers a list of errors
        body = body if isinstance(body, dict) else {}
        headers = {k.lower(): v for k, v in exc.response.headers.items()}
        status = exc.status_code
        wait_ms = parse_retry_after(headers.get("retry-after-ms"))
        if wait_ms is not None:
            # OpenAI's (and Azure's) wait in milliseconds, which the SDKs read before the whole seconds of
            # Retry-After: sometimes the only one sent.
            headers["retry-after"] = str(wait_ms / 1000)
        delay = _google_retry_delay(body)
        if delay is not None and "retry-after" not in headers:
            # Gemini sends no Retry-After: its 429 says when to come back in the body, as google.rpc.RetryInfo.
            headers["retry-after"] = delay
        if isinstance(exc, anthropic.APIStatusError):
            code = exc.error_code or exc.type
            message = exc.api_message or exc.message
            account = code in _ANTHROPIC_SPEND_CODES
            account = account or (status == 400 and any(m in message.lower() for m in _ANTHROPIC_CREDIT_MESSAGES))
        else:
            code = exc.code or body.get("type") or body.get("status")
            # xAI's errors are {"code": <a sentence>, "error": <the message>}: the SDK keeps the string.
            message = body.get("message") or (exc.body if isinstance(exc.body, str) and exc.body else exc.message)
            metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
            account = status == 403 and metadata.get("limit_source") in _OPENROUTER_BUDGETS
        wait = parse_retry_after(headers.get("retry-after"))
        if status == 402 and wait is not None:
            # OpenRouter's in-flight spending budget (the estimated cost of requests still running, against the
            # balance): its 402 says when to come back. A 402 without Retry-After is out of credit.
            return ProviderRateLimited(
                provider, message, code=code, http_status=status, retry_after=wait, request_id=exc.request_id
            )
        if account or code == "billing_error" or status == 402:
            # Out of credit or spend: Anthropic's billing_error (whatever the status) and the refusals above,
            # OpenRouter's 402 "insufficient credits". The account's problem, not the request's: the next provider
            # may answer, this one will not.
            return QuotaExceeded(provider, message, code=code, http_status=status, request_id=exc.request_id)
        if status in (400, 413) and (code in _CONTEXT_CODES or any(m in message.lower() for m in _CONTEXT_MESSAGES)):
            return ContextTooLong(provider, message, code=code, http_status=status, request_id=exc.request_id)
        if status < 400:
            # An error event inside a 200 stream (Anthropic's overloaded_error mid-stream): the status its type
            # stands for in Anthropic's error table; a type the table does not know is a fault on their side.
            status = _ANTHROPIC_TYPE_STATUS.get(exc.type, 500)
        return error_from_http(provider, status, headers=headers, code=code, message=message, request_id=exc.request_id)
    if isinstance(exc, openai.APIError) and isinstance(exc.body, dict):
        # The `{"error": ...}` chunk OpenAI and OpenRouter send when an answer fails after its 200.
        return error_in_answer(provider, exc.body)
    if isinstance(exc, _SDK_ERRORS):
        # The provider answered something the SDK could not read: treat it as a provider fault.
        return ProviderUnavailable(provider, f"unreadable response ({type(exc).__name__})")
    return None


_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def _google_retry_delay(body):
    """The wait in seconds (a string) of a Google error's RetryInfo detail, or None: Gemini's 429 RESOURCE_EXHAUSTED
    carries `{"@type": ".../google.rpc.RetryInfo", "retryDelay": "17s"}` in `error.details` (a protobuf Duration
    in JSON: decimal seconds ending in "s")."""
    details = body.get("details")
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO:
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s") and parse_retry_after(delay[:-1]) is not None:
                return delay[:-1]
    return None


def error_in_answer(provider, error):
    """The hub's error for an `{"error": {"code", "message"}}` inside a 200 answer (OpenRouter: "any error occurred
    while the LLM is producing the output will be emitted in the response body or as an SSE data event"): a numeric
    code is the HTTP status it stands for, anything else a fault on the provider's side."""
    code = error.get("code")
    message = error.get("message") if isinstance(error.get("message"), str) else "an error inside the answer"
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        if code == 402:
            return QuotaExceeded(provider, message, code=str(code), http_status=code)
        return error_from_http(provider, code, code=str(code), message=message)
    return ProviderUnavailable(provider, message, code=str(code) if code is not None else None)


class AIAdapter(ProviderAdapter):
    """One AI provider's call wrapper: `aattempt()` (gateway.aattempt) around the SDK call, and around reading
    the stream it opens, with the SDKs' exceptions translated once by `translate` above."""

    sdk_errors = _SDK_ERRORS

    def translate(self, exc):
        return translate(self.provider, exc)


class OpenAIAdapter(AIAdapter):
    provider = "openai"


class AnthropicAdapter(AIAdapter):
    provider = "anthropic"


class OpenRouterAdapter(AIAdapter):
    provider = "openrouter"


class XAIAdapter(AIAdapter):
    provider = "xai"


class GeminiAdapter(AIAdapter):
    provider = "gemini"


class GitHubModelsAdapter(AIAdapter):
    provider = "github_models"


# One instance per provider: `ADAPTERS[provider].aattempt("completion", ...)`.
ADAPTERS = {
    cls.provider: cls()
    for cls in (OpenAIAdapter, AnthropicAdapter, OpenRouterAdapter, XAIAdapter, GeminiAdapter, GitHubModelsAdapter)
}
