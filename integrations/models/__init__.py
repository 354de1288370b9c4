from .alerts import Alert, Budget
from .calls import LATENCY_BUCKETS_MS, ProviderCall, UsageRollup
from .credentials import Connection
from .health import WorkerHeartbeat
from .idempotency import IdempotencyRecord
from .tokens import ApiToken
from .webhooks import WebhookEvent

__all__ = [
    "Alert",
    "ApiToken",
    "Budget",
    "Connection",
    "IdempotencyRecord",
    "LATENCY_BUCKETS_MS",
    "ProviderCall",
    "UsageRollup",
    "WebhookEvent",
    "WorkerHeartbeat",
]
