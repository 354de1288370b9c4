"""AI providers and the AI gateway's routes, prices and budgets."""

from django.core.exceptions import ImproperlyConfigured

from ._env import env, env_bool, merged_table

# AI providers
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
OPENROUTER_API_KEY = env.str("OPENROUTER_API_KEY", default="")
OPENROUTER_BASE_URL = env.str("OPENROUTER_BASE_URL", default="https://openrouter.ai/api/v1")
XAI_API_KEY = env.str("XAI_API_KEY", default="")
XAI_BASE_URL = env.str("XAI_BASE_URL", default="https://api.x.ai/v1")
GEMINI_API_KEY = env.str("GEMINI_API_KEY", default="")
GEMINI_BASE_URL = env.str("GEMINI_BASE_URL", default="https://generativelanguage.googleapis.com/v1beta/openai/")
GITHUB_MODELS_TOKEN = env.str("GITHUB_MODELS_TOKEN", default="")
GITHUB_MODELS_BASE_URL = env.str("GITHUB_MODELS_BASE_URL", default="https://models.github.ai/inference")

# AI gateway (ai app). A `task` names an ordered chain of (provider, model):
# the gateway tries them in order, falling through on retryable errors.
# Cheap models first for `simple`, as the old review recommended. GitHub Models is on no default route:
# GitHub retired it on 2026-07-30 (github.blog changelog "GitHub Models is now retired"; its inference API
# answers 410), so a route naming it could only end in that refusal.
AI_ROUTES = merged_table(
    {
        "simple": [
            ["gemini", "gemini-2.5-flash-lite"],
            ["openai", "gpt-4o-mini"],
            ["anthropic", "claude-haiku-4-5"],
            ["xai", "grok-3-mini"],
            ["openrouter", "meta-llama/llama-3.3-70b-instruct"],
        ],
        "writing": [
            ["anthropic", "claude-sonnet-4-6"],
            ["openai", "gpt-4.1"],
            ["gemini", "gemini-2.5-pro"],
            ["openrouter", "anthropic/claude-sonnet-4.5"],
        ],
        # Reasoning models accept no temperature (OpenAI refuses one with a 400): the hub sends them none.
        "reasoning": [
            ["openai", "gpt-5-mini"],
            ["anthropic", "claude-sonnet-4-6"],
            ["gemini", "gemini-2.5-pro"],
            ["xai", "grok-4"],
            ["openrouter", "deepseek/deepseek-r1"],
        ],
    },
    "AI_ROUTES_JSON",
)
for _task, _chain in AI_ROUTES.items():
    if not isinstance(_chain, list) or not all(
        isinstance(e, (list, tuple)) and len(e) == 2 and all(isinstance(x, str) and x for x in e) for e in _chain
    ):
        raise ImproperlyConfigured(f"AI_ROUTES_JSON: task {_task!r} must be a list of [provider, model] pairs")
AI_DEFAULT_TASK = env.str("AI_DEFAULT_TASK", default="simple")
if AI_DEFAULT_TASK not in AI_ROUTES:
    raise ImproperlyConfigured(f"AI_DEFAULT_TASK {AI_DEFAULT_TASK!r} is not a task in AI_ROUTES")
# USD per 1M tokens: input, output, cached input (read from the provider's prompt cache) and, where the
# provider bills it above the input price, input written to that cache: "cache_write" (Anthropic: 1.25x
# input, a five-minute cache) and "cache_write_1h" (2x, an hour-long one); per provider and model
# ("*" prices any other model of that provider). A model without a price is not called (its
# cost could not be counted against a budget) unless staff mark it free in admin (AI models marked free).
AI_MODEL_PRICES = merged_table(
    {
        "openai": {
            "gpt-4o-mini": {"input": "0.15", "output": "0.60", "cached_input": "0.075"},
            "gpt-4.1": {"input": "2.00", "output": "8.00", "cached_input": "0.50"},
            "gpt-5-mini": {"input": "0.25", "output": "2.00", "cached_input": "0.025"},
        },
        "anthropic": {
            "claude-haiku-4-5": {
                "input": "1.00",
                "output": "5.00",
                "cached_input": "0.10",
                "cache_write": "1.25",
                "cache_write_1h": "2.00",
            },
            "claude-sonnet-4-6": {
                "input": "3.00",
                "output": "15.00",
                "cached_input": "0.30",
                "cache_write": "3.75",
                "cache_write_1h": "6.00",
            },
        },
        "gemini": {
            "gemini-2.5-flash-lite": {"input": "0.10", "output": "0.40", "cached_input": "0.025"},
            "gemini-2.5-pro": {"input": "1.25", "output": "10.00", "cached_input": "0.31"},
        },
        "xai": {
            "grok-3-mini": {"input": "0.30", "output": "0.50", "cached_input": "0.075"},
            "grok-4": {"input": "3.00", "output": "15.00", "cached_input": "0.75"},
        },
        "openrouter": {
            "meta-llama/llama-3.3-70b-instruct": {"input": "0.12", "output": "0.30"},
            "anthropic/claude-sonnet-4.5": {
                "input": "3.00",
                "output": "15.00",
                "cached_input": "0.30",
                "cache_write": "3.75",
            },
            "deepseek/deepseek-r1": {"input": "0.55", "output": "2.19"},
        },
        # Free within GitHub's per-account rate limits.
        "github_models": {"*": {"input": "0", "output": "0"}},
    },
    "AI_MODEL_PRICES_JSON",
)
# Per-user monthly spend (USD) across every AI provider; staff override it per user in admin.
AI_USER_MONTHLY_BUDGET_USD = env.str("AI_USER_MONTHLY_BUDGET_USD", default="10.00")
try:
    if float(AI_USER_MONTHLY_BUDGET_USD) < 0:
        raise ValueError
except ValueError:
    raise ImproperlyConfigured(
        f"AI_USER_MONTHLY_BUDGET_USD must be a non-negative amount, got {AI_USER_MONTHLY_BUDGET_USD!r}"
    ) from None
AI_BUDGET_ALERT_PERCENT = env.int("AI_BUDGET_ALERT_PERCENT", default=80)
AI_CACHE_TTL_SECONDS = env.int("AI_CACHE_TTL_SECONDS", default=3600)
# Store prompt and answer text on AI request rows (admin); off by default: they may hold personal data.
AI_LOG_PROMPTS = env_bool("AI_LOG_PROMPTS", False)
# Completions per user (django-ratelimit rate, e.g. 30/m).
AI_USER_RATE = env.str("AI_USER_RATE", default="30/m")
# A completion walks its chain for at most this long; a provider's Retry-After
# is waited out (once) only when it is below AI_RETRY_WAIT_MAX_SECONDS and fits.
# POST /api/v1/ai/completions/ with `Authorization: Token ...` skips the middleware it does not need (AI_MIDDLEWARE,
# ai.fastpath); off: the full chain, as every other API request.
AI_FAST_PATH = env_bool("AI_FAST_PATH", True)
AI_DEADLINE_SECONDS = env.float("AI_DEADLINE_SECONDS", default=90.0)
AI_RETRY_WAIT_MAX_SECONDS = env.float("AI_RETRY_WAIT_MAX_SECONDS", default=2.0)
# A web worker books answered completions in rounds (integrations.gateway.bookings): a round starts this long
# after the first answer it books, so the answers of that window share one round trip and most requests run
# beside no round. Longer: fewer rounds, but a killed worker loses the bookings of that long (their holds stay
# reserved to the month's end: the user is refused early, never let past the budget). 0: a round after each answer.
AI_BOOKING_ROUND_MS = env.int("AI_BOOKING_ROUND_MS", default=25)
# A web worker holds a slice of an active user's monthly budget ahead (ai.leases): the user's next completions in
# that worker hold theirs from it in memory instead of a round trip to PostgreSQL each. A slice is this many holds
# like the request that opens it (0: no leases, every request holds its own), at most this percent of the user's
# limit, and is given back after this many idle seconds (and at the worker's shutdown).
AI_BUDGET_LEASE_REQUESTS = env.int("AI_BUDGET_LEASE_REQUESTS", default=20)
AI_BUDGET_LEASE_SHARE_PERCENT = env.float("AI_BUDGET_LEASE_SHARE_PERCENT", default=1.0)
AI_BUDGET_LEASE_IDLE_SECONDS = env.float("AI_BUDGET_LEASE_IDLE_SECONDS", default=5.0)
# The answer's length cap sent when the client gives none (every provider gets one,
# so that a request's largest possible cost is known and can be reserved).
AI_DEFAULT_MAX_TOKENS = env.int("AI_DEFAULT_MAX_TOKENS", default=1024)
# The largest max_tokens a user may ask for (400 above it); staff override it per user in admin.
AI_USER_MAX_TOKENS = env.int("AI_USER_MAX_TOKENS", default=16384)
