# Admin for the webhook inbox and encrypted credentials: the ModelAdmins live
# beside their code; importing them here is what registers them.
from .connections_admin import ConnectionAdmin  # noqa: F401
from .webhooks.admin import WebhookEventAdmin  # noqa: F401
