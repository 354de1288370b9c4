from .alerts import Alert, Budget
from .health import WorkerHeartbeat

__all__ = ["Alert", "Budget", "WorkerHeartbeat"]
