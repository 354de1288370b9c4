from .alerts import Alert, Budget
from .calls import LATENCY_BOUNDS_MS, ProviderCall, ProviderRollup, UsageRollup
from .credentials import Connection
from .health import WorkerHeartbeat
from .idempotency import IdempotencyRecord
from .webhooks import WebhookEvent

__all__ = [
    "Alert",
    "Budget",
    "Connection",
    "IdempotencyRecord",
    "LATENCY_BOUNDS_MS",
    "ProviderCall",
    "ProviderRollup",
    "UsageRollup",
    "WebhookEvent",
    "WorkerHeartbeat",
]
