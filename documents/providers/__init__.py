"""Where the documents' bytes live: S3 (django-storages over boto3) or the filesystem.

The only module that imports boto3, botocore and storages. `current_backend()`
is S3 when S3_BUCKET is set and the filesystem under MEDIA_ROOT otherwise;
each version remembers its backend, so `backend_for(version.backend)` still
finds files stored before a switch. Both backends offer the same operations:

    save(key, upload, content_type=, size=, ...)  -> storage class
    read_into(key, consume, ...)                  -> consume(iterator of chunks)
    delete(key, ...)   list_objects(prefix)   head_storage_class(key)
                       (on a versioned bucket S3's delete removes every version of the key)
    quarantine(key, dest, tags=, ...)             -> "moved" | "already" | "missing"

Every S3 request goes through the gateway (calls, latency, failures, bytes
and cost land in the call log). boto3 makes exactly one attempt per request
(`total_max_attempts=1`): the gateway and Celery are the one retry loop.

common.py     PREFIX, READ_CHUNK, tag_value, SourceReadError, object_missing
s3_client.py  S3Adapter (S3), the cached storage, reset
s3.py         S3Backend
local.py      LocalBackend
backends.py   current_backend, backend_for
"""

from .backends import backend_for, current_backend
from .common import PREFIX, READ_CHUNK, SourceReadError, object_missing, tag_value
from .local import LocalBackend
from .s3 import S3Backend
from .s3_client import S3, S3Adapter, reset
from .s3_client import _storage as _storage  # tests reach the cached S3Storage by this path

__all__ = [
    "PREFIX",
    "READ_CHUNK",
    "SourceReadError",
    "object_missing",
    "tag_value",
    "S3",
    "S3Adapter",
    "reset",
    "S3Backend",
    "LocalBackend",
    "backend_for",
    "current_backend",
]
