"""The staff console in Django admin: overview, money, charts, triage lists and the append-only records.

The overview sits on the admin index (templates/admin/index.html renders
`console_overview`); the money page and the charts are views of the call
log's admin. Calls, roll-ups and webhook events are evidence: no add, no
change, no delete. Alerts are only acknowledged or resolved. Every staff
action (circuit open/close, replay, acknowledge, resolve) writes a LogEntry,
so "Recent actions" says who did what.

base.py     the shared pieces (log_staff_action, filters, AppendOnlyAdmin, calls_url)
calls.py    ProviderCallAdmin with the money page and charts
alerts.py   AlertAdmin
rollups.py  BudgetAdmin and the roll-ups

Importing the package registers every ModelAdmin (admin autodiscovery imports `integrations.admin`).
"""

from .alerts import AlertAdmin, OpenFilter, alert_source_url
from .base import (
    AppendOnlyAdmin,
    CalendarQuerySet,
    EstimatedCountPaginator,
    OutcomeFilter,
    ProviderFilter,
    SinceFilter,
    calls_url,
    log_staff_action,
)
from .calls import ProviderCallAdmin
from .rollups import BudgetAdmin, ProviderRollupAdmin, UsageRollupAdmin

__all__ = [
    "AppendOnlyAdmin",
    "CalendarQuerySet",
    "EstimatedCountPaginator",
    "OutcomeFilter",
    "ProviderFilter",
    "SinceFilter",
    "calls_url",
    "log_staff_action",
    "ProviderCallAdmin",
    "AlertAdmin",
    "OpenFilter",
    "alert_source_url",
    "BudgetAdmin",
    "ProviderRollupAdmin",
    "UsageRollupAdmin",
]

# The webhook inbox's and credentials' ModelAdmins live beside their code; importing registers them.
# API tokens (issue 17): registered here so admin autodiscovery finds them.
# Operations (issue 14): alert channels and deliveries, retention runs, audit archives.
from .. import ops_admin as _ops_admin  # noqa: E402,F401
from ..auth import admin as _token_admin  # noqa: E402,F401
from ..connections_admin import ConnectionAdmin  # noqa: E402,F401
from ..webhooks.admin import WebhookEventAdmin  # noqa: E402,F401
