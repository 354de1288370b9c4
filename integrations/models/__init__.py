from .alerts import Alert, Budget
from .health import WorkerHeartbeat

__all__ = ["Alert", "Budget", "WorkerHeartbeat"]

# Webhook inbox (branch inbox)
from .webhooks import WebhookEvent  # noqa: E402

__all__ += ["WebhookEvent"]
