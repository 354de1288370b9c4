from .alerts import Alert, Budget
from .calls import LATENCY_BOUNDS_MS, ProviderCall, ProviderRollup, UsageRollup
from .credentials import Connection, OAuthState
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
    "LATENCY_BOUNDS_MS",
    "OAuthState",
    "ProviderCall",
    "ProviderRollup",
    "UsageRollup",
    "WebhookEvent",
    "WorkerHeartbeat",
]
