"""Where export zips live, and deleting every version of an S3 object.

With S3_BUCKET set, zips go to the documents bucket under PRIVACY_EXPORT_PREFIX through the documents
app's S3 backend (so every request is a gateway attempt in the call log); otherwise to the filesystem
under PRIVACY_EXPORT_ROOT, served by a hub-signed link.
"""

import os
import secrets

from django.conf import settings
from django.core.files.storage import FileSystemStorage

from documents import providers as documents_providers


def uses_s3():
    return bool(settings.S3_BUCKET)


def new_key():
    return f"{settings.PRIVACY_EXPORT_PREFIX}{secrets.token_urlsafe(24)}.zip"


def _local():
    return FileSystemStorage(location=str(settings.PRIVACY_EXPORT_ROOT))


def save(key, fileobj, *, size, owner=None):
    if uses_s3():
        documents_providers.S3Backend().save(key, fileobj, content_type="application/zip", size=size, owner=owner)
    else:
        storage = _local()
        path = storage.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            while chunk := fileobj.read(1024 * 1024):
                out.write(chunk)


def open_local(key):
    return _local().open(key, "rb")


def exists_local(key):
    return _local().exists(key)


def signed_url(key, *, filename, ttl):
    """A presigned S3 URL, or None for the filesystem (the caller signs a hub link instead)."""
    if not uses_s3():
        return None
    return documents_providers.S3Backend().signed_url(
        key, filename_disposition=f'attachment; filename="{filename}"', content_type="application/zip", ttl=ttl
    )


def delete(key, *, owner=None):
    """Delete the zip; on S3 every version and delete marker too (the documents bucket is versioned)."""
    if not key:
        return 0
    if uses_s3():
        return s3_delete_all_versions(key, owner=owner)
    _local().delete(key)
    return 1


def s3_delete_all_versions(key, *, owner=None, related=None):
    return _s3_delete_versions(key, exact=True, owner=owner, related=related)


def s3_delete_prefix_all_versions(prefix, *, owner=None):
    """Every version and delete marker of every key under `prefix` (a user's own folder); how many."""
    if not prefix.endswith("/"):
        raise ValueError("a prefix to erase must end with '/' so it cannot match another user's folder")
    return _s3_delete_versions(prefix, exact=False, owner=owner)


def _s3_delete_versions(key, *, exact, owner=None, related=None):
    """Delete every version and delete marker of exactly `key` (`exact=False`: of every key under it); how many.

    A plain DeleteObject on a versioned bucket only adds a delete marker: the bytes stay as a noncurrent
    version. Erasure must remove those too. A key already gone counts as done.
    """
    return documents_providers.S3Backend().delete_versions(key, exact=exact, owner=owner, related=related)
