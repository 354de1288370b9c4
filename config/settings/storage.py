"""AWS S3 and the documents app."""

from django.core.exceptions import ImproperlyConfigured

from ._env import env, env_bool
from .celery import CELERY_BEAT_SCHEDULE

# AWS S3
S3_BUCKET = env.str("S3_BUCKET", default="")
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="")
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="")
AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="us-east-1")
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="")
# "path" for MinIO and other S3-compatible servers that have no virtual-host names.
AWS_S3_ADDRESSING_STYLE = env.str("AWS_S3_ADDRESSING_STYLE", default="") or None
# Objects are private and encrypted at rest: the canned ACL (empty for buckets
# with ACLs disabled, which are private anyway) and SSE (AES256 or aws:kms).
S3_OBJECT_ACL = env.str("S3_OBJECT_ACL", default="private")
S3_SSE = env.str("S3_SSE", default="AES256")
S3_SSE_KMS_KEY_ID = env.str("S3_SSE_KMS_KEY_ID", default="")
S3_STORAGE_CLASS = env.str("S3_STORAGE_CLASS", default="STANDARD")
# Multipart: files from the threshold up go in parts; memory per upload stays
# near concurrency x part size, whatever the file's size. S3 parts are >= 5 MiB.
S3_MULTIPART_THRESHOLD_BYTES = env.int("S3_MULTIPART_THRESHOLD_BYTES", default=8 * 1024 * 1024)
S3_MULTIPART_CHUNK_BYTES = env.int("S3_MULTIPART_CHUNK_BYTES", default=8 * 1024 * 1024)
S3_MAX_CONCURRENCY = env.int("S3_MAX_CONCURRENCY", default=2)
if S3_MULTIPART_CHUNK_BYTES < 5 * 1024 * 1024:
    raise ImproperlyConfigured("S3_MULTIPART_CHUNK_BYTES must be at least 5 MiB (5242880), S3's smallest part.")
if S3_MAX_CONCURRENCY < 1:
    raise ImproperlyConfigured("S3_MAX_CONCURRENCY must be at least 1.")
# Bucket lifecycle (manage.py configure_bucket_lifecycle); 0 days switches a rule off.
S3_LIFECYCLE_IA_DAYS = env.int("S3_LIFECYCLE_IA_DAYS", default=30)
S3_LIFECYCLE_IA_CLASS = env.str("S3_LIFECYCLE_IA_CLASS", default="STANDARD_IA")
S3_LIFECYCLE_ARCHIVE_DAYS = env.int("S3_LIFECYCLE_ARCHIVE_DAYS", default=180)
S3_LIFECYCLE_ARCHIVE_CLASS = env.str("S3_LIFECYCLE_ARCHIVE_CLASS", default="GLACIER_IR")
# An upload that crashed mid-way leaves billed parts behind until this rule aborts it.
S3_LIFECYCLE_ABORT_MULTIPART_DAYS = env.int("S3_LIFECYCLE_ABORT_MULTIPART_DAYS", default=1)
S3_LIFECYCLE_NONCURRENT_DAYS = env.int("S3_LIFECYCLE_NONCURRENT_DAYS", default=30)

# Documents (S3 when S3_BUCKET is set, else the filesystem under MEDIA_ROOT)
DOCUMENT_MAX_BYTES = env.int("DOCUMENT_MAX_BYTES", default=50 * 1024 * 1024)
# Bytes each user may keep (all versions); 0 = no quota.
DOCUMENT_USER_QUOTA_BYTES = env.int("DOCUMENT_USER_QUOTA_BYTES", default=0)
# Inbound uploads (new documents and new versions together) per user.
DOCUMENT_UPLOAD_RATE = env.str("DOCUMENT_UPLOAD_RATE", default="30/m")
DOCUMENT_URL_TTL_SECONDS = env.int("DOCUMENT_URL_TTL_SECONDS", default=300)
# true: no download until a clean virus scan (so also none while CLAMD_URL is unset).
DOCUMENT_REQUIRE_SCAN = env_bool("DOCUMENT_REQUIRE_SCAN", False)
# Stored objects without a row are removed once older than this (an upload in
# flight has its object before its row).
DOCUMENT_ORPHAN_GRACE_SECONDS = env.int("DOCUMENT_ORPHAN_GRACE_SECONDS", default=3600)
DOCUMENT_ORPHAN_SWEEP_SECONDS = env.int("DOCUMENT_ORPHAN_SWEEP_SECONDS", default=3600)
# Infected objects are moved under this key prefix (S3 and MEDIA_ROOT alike), so
# a presigned URL handed out before the scan finished stops working.
DOCUMENT_QUARANTINE_PREFIX = env.str("DOCUMENT_QUARANTINE_PREFIX", default="quarantine/")
if (
    not DOCUMENT_QUARANTINE_PREFIX.endswith("/")
    or DOCUMENT_QUARANTINE_PREFIX.startswith(("/", "documents/"))
    or ".." in DOCUMENT_QUARANTINE_PREFIX.split("/")
    or len(DOCUMENT_QUARANTINE_PREFIX) > 150  # storage_key holds prefix + the original key
):
    raise ImproperlyConfigured(
        "DOCUMENT_QUARANTINE_PREFIX must be a relative key prefix of at most 150 characters, ending in '/' "
        "and outside documents/ "
        f"(got {DOCUMENT_QUARANTINE_PREFIX!r})."
    )
# ClamAV daemon: tcp://host:3310 or unix:///run/clamav/clamd.ctl; empty = no scanning.
CLAMD_URL = env.str("CLAMD_URL", default="")
CLAMD_TIMEOUT_SECONDS = env.float("CLAMD_TIMEOUT_SECONDS", default=60.0)
# Uploads above this spool to a temporary file instead of memory (Django's
# default, stated here because the documents upload path depends on it).
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=2621440)
CELERY_BEAT_SCHEDULE["documents.sweep_orphans"] = {
    "task": "documents.sweep_orphans",
    "schedule": float(DOCUMENT_ORPHAN_SWEEP_SECONDS),
}
