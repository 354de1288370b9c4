"""How much a user may upload, and what their stored bytes cost."""

from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Sum

from ..models import Document, DocumentVersion
from ..uploads import UploadTooLarge


def storage_used(*, owner):
    total = DocumentVersion.objects.filter(document__owner=owner, document__state=Document.State.ACTIVE).aggregate(
        total=Sum("size")
    )["total"]
    return total or 0


def upload_limit_for(user):
    """(bytes this user may upload now, "max_bytes" or "quota")."""
    max_bytes = settings.DOCUMENT_MAX_BYTES
    quota = settings.DOCUMENT_USER_QUOTA_BYTES
    if quota and getattr(user, "is_authenticated", False):
        remaining = max(0, quota - storage_used(owner=user))
        if remaining < max_bytes:
            return remaining, "quota"
    return max_bytes, "max_bytes"


def quota_recheck_locked(*, owner, size):
    """Inside the transaction that writes a new version's row: refuse it if it no longer fits the quota.

    The check before storing cannot see an upload being stored at the same moment (its row is written
    after its object), so two uploads that each fit could together pass the quota. The owner's row lock
    makes one user's uploads count and write their rows one after another; a refused upload's stored
    object has no row and is removed at once (versions._refusal_removes_stored), else by the orphan sweep.
    """
    quota = settings.DOCUMENT_USER_QUOTA_BYTES
    if not quota:
        return
    get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
    remaining = max(0, quota - storage_used(owner=owner))
    if size > remaining:
        raise UploadTooLarge(remaining, "quota")


def usage_for_owner(*, owner):
    """Bytes stored (all versions), the quota, and the month's storage cost estimate by storage class."""
    rows = (
        DocumentVersion.objects.filter(document__owner=owner, document__state=Document.State.ACTIVE)
        .values("storage_class")
        .annotate(bytes=Sum("size"))
        .order_by("storage_class")
    )
    prices = settings.PROVIDER_PRICES.get("s3", {}).get("storage", {}).get("per_gb_month", {})
    by_class, total_bytes, cost = [], 0, Decimal(0)
    for row in rows:
        price = Decimal(str(prices.get(row["storage_class"], 0)))
        row_cost = Decimal(row["bytes"]) / Decimal(10**9) * price
        by_class.append({"storage_class": row["storage_class"], "bytes": row["bytes"], "monthly_cost_usd": row_cost})
        total_bytes += row["bytes"]
        cost += row_cost
    return {
        "bytes": total_bytes,
        "quota_bytes": settings.DOCUMENT_USER_QUOTA_BYTES or None,
        "max_upload_bytes": upload_limit_for(owner)[0],
        "monthly_cost_usd": cost.quantize(Decimal("0.000001")),
        "by_storage_class": by_class,
    }
