# One module per area; importing registers the ModelAdmins.
from . import webhooks  # noqa: F401
