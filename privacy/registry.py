"""The registry of what each app holds about a user.

    register(PrivacyHolder(
        app="payments",
        models=("payments.Customer", "payments.Invoice", ...),   # every model of the app tied to a user
        export=export_payments,      # export(user, out): out.json("payments", {"invoices": rows, ...})
        erase=erase_payments,        # erase(user, report): idempotent; report.count("payments.Invoice", n)
        disconnect=None,             # disconnect(user, report): at once, when erasure is requested
        keep={"payments.Invoice": "tax law: ..."},               # what survives erasure (minimised) and why
        references=None,             # references(user) -> provider ids whose webhook payloads are redacted
        description="Invoices, payments, refunds, subscriptions (Stripe ids, amounts).",
    ))

`erase` runs after the grace period, holder by holder in `order`; a holder whose erase raises is
retried (the others that finished are not run again), so every erase must be safe to run twice.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

_HOLDERS: dict[str, "PrivacyHolder"] = {}


@dataclass(frozen=True)
class PrivacyHolder:
    app: str
    models: tuple[str, ...]
    export: Callable | None = None
    erase: Callable | None = None
    disconnect: Callable | None = None
    keep: dict[str, str] = field(default_factory=dict)
    references: Callable[..., Iterable[str]] | None = None
    description: str = ""
    retention: str = ""
    # Erasure order: lower first. Redaction and provider deletions need the rows that name the
    # provider's ids, so apps run before `integrations` (which re-points the call log) and `auth` (last).
    order: int = 100


def register(holder):
    """Declare (or re-declare, e.g. on a module reload) what `holder.app` holds about a user."""
    for label in holder.models:
        if label.count(".") != 1:
            raise ValueError(f"{holder.app}: model {label!r} must be 'app_label.ModelName'")
    for label in holder.keep:
        if label not in holder.models:
            raise ValueError(f"{holder.app}: keeps {label!r}, which is not among its models")
    _HOLDERS[holder.app] = holder
    return holder


def holders():
    """Every registered holder, in erasure order."""
    return sorted(_HOLDERS.values(), key=lambda h: (h.order, h.app))


def holder(app):
    return _HOLDERS[app]


def covered_models():
    """{"app_label.modelname" (lower case): holder} for every declared model."""
    return {label.lower(): h for h in _HOLDERS.values() for label in h.models}
