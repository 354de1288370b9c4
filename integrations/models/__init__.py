from .alerts import Alert, AlertChannel, AlertDelivery, Budget
from .calls import LATENCY_BOUNDS_MS, ProviderCall, ProviderRollup, UsageRollup
from .credentials import Connection, OAuthState
from .health import WorkerHeartbeat
from .idempotency import IdempotencyRecord
from .retention import RetentionRun
from .tokens import ApiToken
from .webhooks import WebhookEvent

__all__ = [
    "Alert",
    "AlertChannel",
    "AlertDelivery",
    "ApiToken",
    "Budget",
    "Connection",
    "IdempotencyRecord",
    "LATENCY_BOUNDS_MS",
    "OAuthState",
    "ProviderCall",
    "ProviderRollup",
    "RetentionRun",
    "UsageRollup",
    "WebhookEvent",
    "WorkerHeartbeat",
]
