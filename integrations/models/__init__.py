from .alerts import Alert, Budget
from .calls import LATENCY_BUCKETS_MS, ProviderCall, UsageRollup
from .health import WorkerHeartbeat

__all__ = ["Alert", "Budget", "LATENCY_BUCKETS_MS", "ProviderCall", "UsageRollup", "WorkerHeartbeat"]
