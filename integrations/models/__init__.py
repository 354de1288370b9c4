from .alerts import Alert, Budget
from .calls import LATENCY_BUCKETS_MS, ProviderCall, UsageRollup
from .health import WorkerHeartbeat
from .idempotency import IdempotencyRecord

__all__ = ["Alert", "Budget", "IdempotencyRecord", "LATENCY_BUCKETS_MS", "ProviderCall", "UsageRollup", "WorkerHeartbeat"]
