from .alerts import Alert, Budget
from .health import WorkerHeartbeat

__all__ = ["Alert", "Budget", "WorkerHeartbeat"]

# Webhook inbox and encrypted credentials (branch inbox)
from .credentials import Connection  # noqa: E402
from .webhooks import WebhookEvent  # noqa: E402

__all__ += ["Connection", "WebhookEvent"]
