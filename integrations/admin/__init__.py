# One module per area; importing registers the ModelAdmins.
from . import credentials, webhooks  # noqa: F401
