"""Storage classes: read one back from S3, and the bucket's lifecycle rules from settings."""

from django.conf import settings

from ..models import DocumentVersion
from ..providers import PREFIX, S3Backend, backend_for


def version_refresh_storage_class(*, version):
    """Read the object's storage class back from S3 (lifecycle rules move objects on S3's side)."""
    storage_class = backend_for(version.backend).head_storage_class(
        version.storage_key, owner=version.document.owner_id, related=version
    )
    if storage_class != version.storage_class:
        DocumentVersion.objects.filter(pk=version.pk).update(storage_class=storage_class)
        version.storage_class = storage_class
    return storage_class


class LifecycleError(ValueError):
    pass


def lifecycle_rules():
    """The bucket's lifecycle rules for documents/, from settings."""
    ia_days, archive_days = settings.S3_LIFECYCLE_IA_DAYS, settings.S3_LIFECYCLE_ARCHIVE_DAYS
    if ia_days and settings.S3_LIFECYCLE_IA_CLASS in ("STANDARD_IA", "ONEZONE_IA") and ia_days < 30:
        raise LifecycleError(
            f"S3 moves objects to {settings.S3_LIFECYCLE_IA_CLASS} after 30 days at the earliest; S3_LIFECYCLE_IA_DAYS is {ia_days}."
        )
    if ia_days and archive_days and archive_days <= ia_days:
        raise LifecycleError(
            f"S3_LIFECYCLE_ARCHIVE_DAYS ({archive_days}) must be later than S3_LIFECYCLE_IA_DAYS ({ia_days})."
        )
    rule = {"ID": "hub-documents", "Filter": {"Prefix": PREFIX}, "Status": "Enabled"}
    transitions = []
    if ia_days:
        transitions.append({"Days": ia_days, "StorageClass": settings.S3_LIFECYCLE_IA_CLASS})
    if archive_days:
        transitions.append({"Days": archive_days, "StorageClass": settings.S3_LIFECYCLE_ARCHIVE_CLASS})
    if transitions:
        rule["Transitions"] = transitions
    if settings.S3_LIFECYCLE_ABORT_MULTIPART_DAYS:
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": settings.S3_LIFECYCLE_ABORT_MULTIPART_DAYS}
    if settings.S3_LIFECYCLE_NONCURRENT_DAYS:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": settings.S3_LIFECYCLE_NONCURRENT_DAYS}
        # On a versioned bucket a deleted document leaves a delete marker; once its noncurrent
        # versions have expired the marker is all that is left and would stay forever.
        rule["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    if len(rule) == 4:
        raise LifecycleError("Every lifecycle rule is switched off (all S3_LIFECYCLE_*_DAYS are 0).")
    return [rule]


def bucket_lifecycle_configure():
    rules = lifecycle_rules()
    S3Backend().lifecycle_put(rules)
    return rules
