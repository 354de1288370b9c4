"""The outbound call gateway: rate limits, circuit breakers, timeouts, retries, prices."""

from ._env import env, merged_table, provider_defaults

# --- Outbound call gateway (integrations.gateway) -------------------------
# Each table below can be adjusted from the environment with a JSON object of
# the same shape (e.g. RATE_LIMITS_JSON='{"twilio": {"requests": {"rate": 10}}}'),
# merged over these defaults per provider (config/settings/__init__.py merges).

# Token buckets: "rate" tokens per second, "burst" the bucket's size. A scope
# (Stripe account, Gmail user, Twilio sender number) gets its own bucket with
# the provider's limit unless "scopes" names another for it.
provider_defaults(
    RATE_LIMITS={
        "stripe": {"requests": {"rate": 25, "burst": 25}},
        "s3": {"requests": {"rate": 100, "burst": 200}},
        # Gmail: 250 quota units per user per second (callers pass the units as cost).
        "gmail": {"requests": {"rate": 250, "burst": 250}},
        "outlook": {"requests": {"rate": 4, "burst": 10}},
        # Twilio: 1 message/s per long-code sender; short codes and messaging services go faster.
        "twilio": {
            "requests": {"rate": 1, "burst": 1},
            # Reads (price and status fetches) share the account's REST budget, not a sender's.
            "scopes": {"rest": {"requests": {"rate": 10, "burst": 20}}},
        },
        "openai": {"requests": {"rate": 8, "burst": 20}, "tokens": {"rate": 5000, "burst": 100000}},
        "anthropic": {"requests": {"rate": 8, "burst": 20}, "tokens": {"rate": 5000, "burst": 100000}},
        "openrouter": {"requests": {"rate": 5, "burst": 10}},
        "xai": {"requests": {"rate": 5, "burst": 10}},
        "gemini": {"requests": {"rate": 5, "burst": 10}},
        "github_models": {"requests": {"rate": 0.25, "burst": 5}},
        "google_calendar": {"requests": {"rate": 10, "burst": 20}},
        "microsoft_calendar": {"requests": {"rate": 4, "burst": 10}},
        "zoom": {"requests": {"rate": 10, "burst": 10}},
        "webex": {"requests": {"rate": 5, "burst": 10}},
    }
)
# Retry-After sent with a 502/503/504 for a transient provider failure that gave no hint of its own
# (an open circuit sends its remaining open time instead).
PROVIDER_RETRY_AFTER_DEFAULT_SECONDS = env.int("PROVIDER_RETRY_AFTER_DEFAULT_SECONDS", default=5)
# A task may book a token at most this far ahead; beyond it the task is simply deferred.
RATE_LIMIT_MAX_RESERVE_SECONDS = env.float("RATE_LIMIT_MAX_RESERVE_SECONDS", default=3600.0)

CIRCUIT_BREAKER = {
    "failure_threshold": env.int("CIRCUIT_FAILURE_THRESHOLD", default=5),
    "cooldown_seconds": env.float("CIRCUIT_COOLDOWN_SECONDS", default=30.0),
    "probe_timeout_seconds": env.float("CIRCUIT_PROBE_TIMEOUT_SECONDS", default=30.0),
}
CIRCUIT_BREAKER_OVERRIDES = merged_table({}, "CIRCUIT_BREAKER_JSON")

# SDK timeouts in seconds: short inside a web request, longer in a worker.
provider_defaults(
    PROVIDER_TIMEOUTS={
        "default": {"web": 10.0, "task": 30.0},
        "s3": {"web": 30.0, "task": 300.0},
        # AI answers take tens of seconds (a reasoning model thinks before its first token): every AI provider
        # gets the same, not the 10 s meant for a quick REST call (which gave up on answers it was billed for).
        "openai": {"web": 60.0, "task": 120.0},
        "anthropic": {"web": 60.0, "task": 120.0},
        "openrouter": {"web": 60.0, "task": 120.0},
        "xai": {"web": 60.0, "task": 120.0},
        "gemini": {"web": 60.0, "task": 120.0},
        "github_models": {"web": 60.0, "task": 120.0},
    }
)

# Celery retries: exponential backoff with full jitter, base * 2**n capped at cap seconds.
provider_defaults(
    PROVIDER_RETRY={
        "default": {"base": 2.0, "cap": 300.0, "max_retries": 6},
        "stripe": {"base": 2.0, "cap": 120.0, "max_retries": 8},
        "twilio": {"base": 2.0, "cap": 300.0, "max_retries": 6},
    }
)

# Price table in USD: per operation ("*" for any), a fixed "per_call" and
# "per_unit" prices for the units the adapter reports. Adapters that learn the
# real price (Stripe's fee, Twilio's price) pass it and it wins.
provider_defaults(
    PROVIDER_PRICES={
        "stripe": {"charge": {"per_call": "0.30", "per_unit": {"amount_usd": "0.029"}}},
        # S3: PUT/COPY/POST/LIST $0.005 and GET/HEAD $0.0004 per 1,000 requests
        # (a multipart upload is several), transfer out $0.09/GB, DELETE free;
        # "storage" is not an operation but the GB-month price per storage class.
        "s3": {
            "*": {"per_unit": {"requests": "0.000005", "bytes_in": "0", "bytes_out": "0.00000000009"}},
            "get": {"per_unit": {"requests": "0.0000004", "bytes_out": "0.00000000009"}},
            "head": {"per_unit": {"requests": "0.0000004"}},
            "delete": {"per_call": "0"},
            "storage": {
                "per_gb_month": {
                    "STANDARD": "0.023",
                    "INTELLIGENT_TIERING": "0.023",
                    "STANDARD_IA": "0.0125",
                    "ONEZONE_IA": "0.01",
                    "GLACIER_IR": "0.004",
                    "GLACIER": "0.0036",
                    "DEEP_ARCHIVE": "0.00099",
                }
            },
        },
        "twilio": {
            # Estimates until Twilio reports the billed price (sms.price / call.price record it).
            "sms.send": {"per_unit": {"segments": "0.0083"}},
            "call.create": {"per_unit": {"minutes": "0.014"}},
            "call.price": {"per_unit": {"minutes": "0.014"}},
        },
    }
)
