"""Prometheus metrics for provider calls, webhooks and breakers (exposed at /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

provider_calls = Counter(
    "hub_provider_calls_total", "Outbound provider call attempts", ["provider", "operation", "outcome"]
)
provider_latency = Histogram(
    "hub_provider_call_latency_seconds",
    "Latency of outbound provider calls",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
provider_cost = Counter("hub_provider_cost_usd_total", "Cost of provider calls in USD", ["provider"])
# In multiprocess mode a gauge needs a rule for combining processes: the state
# the most recent process saw is the breaker's state (it lives in Redis).
breaker_state = Gauge(
    "hub_circuit_state",
    "Circuit breaker state (0 closed, 1 half-open, 2 open)",
    ["provider"],
    multiprocess_mode="mostrecent",
)
webhook_events = Counter(
    "hub_webhook_events_total",
    "Webhook events by result (received, duplicate, rejected, processed, failed, ignored)",
    ["provider", "result"],
)
