"""Where the documents' bytes live: S3 (django-storages over boto3) or the filesystem.

The only module that imports boto3, botocore and storages. `current_backend()`
is S3 when S3_BUCKET is set and the filesystem under MEDIA_ROOT otherwise;
each version remembers its backend, so `backend_for(version.backend)` still
finds files stored before a switch. Both backends offer the same operations:

    save(key, upload, content_type=, size=, ...)  -> storage class
    read_into(key, consume, ...)                  -> consume(iterator of chunks)
    delete(key, ...)   list_objects(prefix)   head_storage_class(key)
    quarantine(key, dest, tags=, ...)             -> "moved" | "already" | "missing"

Every S3 request goes through the gateway (calls, latency, failures, bytes
and cost land in the call log). boto3 makes exactly one attempt per request
(`total_max_attempts=1`): the gateway and Celery are the one retry loop.
"""

import datetime as dt
import math
import os
import re
from pathlib import Path
from urllib.parse import urlencode

from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage
from storages.backends.s3 import S3Storage

from integrations import gateway
from integrations.errors import (
    PermanentError,
    ProviderTimeout,
    ProviderUnavailable,
    error_from_http,
)
from integrations.providers import ProviderAdapter, credentials_key
from integrations.registry import require

PREFIX = "documents/"
READ_CHUNK = 64 * 1024
# S3 tag values allow letters, digits, spaces and + - = . _ : / @, up to 256 characters.
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")


def tag_value(text):
    """`text` as a valid S3 tag value (a clamd signature name is not always one)."""
    return _TAG_UNSAFE.sub("_", text or "")[:256]


class SourceReadError(Exception):
    """Reading the stored object failed part-way; raised through the consumer untouched."""

    def __init__(self, original):
        super().__init__(str(original))
        self.original = original


def current_backend():
    return backend_for("s3" if settings.S3_BUCKET else "local")


def backend_for(name):
    if name == "s3":
        return S3Backend()
    if name == "local":
        return LocalBackend()
    raise ValueError(f"unknown storage backend {name!r}")


# --- S3 ---------------------------------------------------------------------


def _translate(exc):
    """The hub's error for a boto3/botocore failure, or None to let the gateway classify it."""
    if isinstance(exc, ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        error = exc.response.get("Error", {})
        status = meta.get("HTTPStatusCode") or 0
        return error_from_http(
            "s3",
            status,
            headers=meta.get("HTTPHeaders") or {},
            code=error.get("Code"),
            message=error.get("Message") or str(exc),
            request_id=meta.get("RequestId"),
        )
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError)):
        return ProviderTimeout("s3", str(exc))
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError)):
        return ProviderUnavailable("s3", str(exc))
    return None


class S3Adapter(ProviderAdapter):
    provider = "s3"
    sdk_errors = (ClientError, BotoCoreError)

    def translate(self, exc):
        return _translate(exc)


S3 = S3Adapter()
_attempt = S3.attempt


_storages = {}


def _transfer_config():
    config = TransferConfig(
        multipart_threshold=settings.S3_MULTIPART_THRESHOLD_BYTES,
        multipart_chunksize=settings.S3_MULTIPART_CHUNK_BYTES,
        max_concurrency=settings.S3_MAX_CONCURRENCY,
        use_threads=True,
        preferred_transfer_client="classic",
    )
    # s3transfer reads each part of a file object into memory and by default
    # keeps up to 10 in flight; tie that to the concurrency so an upload holds
    # about concurrency x part size, not 10 parts.
    config.max_in_memory_upload_chunks = settings.S3_MAX_CONCURRENCY
    return config


def _storage():
    """A django-storages S3Storage for the current settings and timeout (cached per both)."""
    timeout = gateway.timeout_for("s3")
    key = credentials_key(
        settings.S3_BUCKET,
        settings.AWS_ACCESS_KEY_ID,
        settings.AWS_SECRET_ACCESS_KEY,
        settings.AWS_S3_REGION_NAME,
        settings.AWS_S3_ENDPOINT_URL,
        settings.AWS_S3_ADDRESSING_STYLE,
        settings.S3_OBJECT_ACL,
        settings.S3_SSE,
        settings.S3_SSE_KMS_KEY_ID,
        settings.S3_STORAGE_CLASS,
        settings.S3_MULTIPART_THRESHOLD_BYTES,
        settings.S3_MULTIPART_CHUNK_BYTES,
        settings.S3_MAX_CONCURRENCY,
        settings.FILE_UPLOAD_MAX_MEMORY_SIZE,
        timeout,
    )
    storage = _storages.get(key)
    if storage is None:
        params = {}
        if settings.S3_SSE:
            params["ServerSideEncryption"] = settings.S3_SSE
            if settings.S3_SSE == "aws:kms" and settings.S3_SSE_KMS_KEY_ID:
                params["SSEKMSKeyId"] = settings.S3_SSE_KMS_KEY_ID
        if settings.S3_STORAGE_CLASS and settings.S3_STORAGE_CLASS != "STANDARD":
            params["StorageClass"] = settings.S3_STORAGE_CLASS
        client_config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=min(timeout, 10.0),
            read_timeout=timeout,
            signature_version="s3v4",
            s3={"addressing_style": settings.AWS_S3_ADDRESSING_STYLE} if settings.AWS_S3_ADDRESSING_STYLE else None,
            max_pool_connections=max(10, settings.S3_MAX_CONCURRENCY + 2),
        )
        storage = S3Storage(
            bucket_name=settings.S3_BUCKET,
            access_key=settings.AWS_ACCESS_KEY_ID,
            secret_key=settings.AWS_SECRET_ACCESS_KEY,
            region_name=settings.AWS_S3_REGION_NAME or None,
            endpoint_url=settings.AWS_S3_ENDPOINT_URL or None,
            default_acl=settings.S3_OBJECT_ACL or None,
            object_parameters=params,
            # Keys are random: never HEAD first to find a free name.
            file_overwrite=True,
            querystring_auth=True,
            signature_version="s3v4",
            client_config=client_config,
            transfer_config=_transfer_config(),
            max_memory_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE,
        )
        if len(_storages) >= 4:
            _storages.clear()  # settings changed (tests, a reload): drop the old clients
        _storages[key] = storage
    return storage


def reset():
    _storages.clear()


def _request_count(size):
    """S3 requests one upload makes: one PUT, or create + parts + complete."""
    if size < settings.S3_MULTIPART_THRESHOLD_BYTES:
        return 1
    return math.ceil(size / settings.S3_MULTIPART_CHUNK_BYTES) + 2


class S3Backend:
    name = "s3"

    @staticmethod
    def _client():
        return _storage().connection.meta.client

    def save(self, key, upload, *, content_type, size, owner=None, related=None):
        content = File(upload.file if hasattr(upload, "file") else upload, name=key)
        # django-storages sends the file object's content_type: ours, from the bytes, not the client's claim.
        content.content_type = content_type
        with _attempt("put", owner=owner, related=related) as call:
            _storage().save(key, content)
            call.record(http_status=200, units={"bytes_in": size, "requests": _request_count(size)})
        return settings.S3_STORAGE_CLASS or "STANDARD"

    def read_into(self, key, consume, *, owner=None, related=None):
        """consume(chunks) with the object's bytes streamed from S3; its failure is not S3's."""
        outcome = {}
        with _attempt("get", owner=owner, related=related) as call:
            resp = self._client().get_object(Bucket=settings.S3_BUCKET, Key=key)
            counted = [0]

            def chunks():
                body = resp["Body"]
                try:
                    for chunk in body.iter_chunks(READ_CHUNK):
                        counted[0] += len(chunk)
                        yield chunk
                except (BotoCoreError, OSError) as exc:
                    raise SourceReadError(exc) from exc
                finally:
                    body.close()

            try:
                outcome["value"] = consume(chunks())
            except SourceReadError as exc:
                raise exc.original from exc
            except Exception as exc:  # noqa: BLE001 - the consumer's error, raised after the S3 call is logged as ok
                outcome["error"] = exc
            call.record(
                http_status=resp["ResponseMetadata"].get("HTTPStatusCode"),
                request_id=resp["ResponseMetadata"].get("RequestId"),
                units={"bytes_out": counted[0], "requests": 1},
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def delete(self, key, *, owner=None, related=None):
        # S3 answers 204 for a key that is already gone, so a repeat is harmless.
        with _attempt("delete", owner=owner, related=related) as call:
            resp = self._client().delete_object(Bucket=settings.S3_BUCKET, Key=key)
            call.record(
                http_status=resp["ResponseMetadata"].get("HTTPStatusCode"),
                request_id=resp["ResponseMetadata"].get("RequestId"),
                units={"requests": 1},
            )

    def list_objects(self, prefix=PREFIX):
        """(key, last modified) for every object under the prefix; one gateway call per page."""
        token = None
        while True:
            kwargs = {"Bucket": settings.S3_BUCKET, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            with _attempt("list") as call:
                page = self._client().list_objects_v2(**kwargs)
                call.record(http_status=200, units={"requests": 1})
            for entry in page.get("Contents", ()):
                yield entry["Key"], entry["LastModified"]
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def head_storage_class(self, key, *, owner=None, related=None):
        with _attempt("head", owner=owner, related=related) as call:
            resp = self._client().head_object(Bucket=settings.S3_BUCKET, Key=key)
            call.record(http_status=200, request_id=resp["ResponseMetadata"].get("RequestId"), units={"requests": 1})
        # S3 leaves StorageClass out for STANDARD.
        return resp.get("StorageClass") or "STANDARD"

    def head(self, key):
        """The object's metadata as S3 reports it (ACL-free: encryption, type, class)."""
        with _attempt("head") as call:
            resp = self._client().head_object(Bucket=settings.S3_BUCKET, Key=key)
            call.record(http_status=200, units={"requests": 1})
        return resp

    def _exists(self, key, *, owner=None, related=None):
        try:
            with _attempt("head", owner=owner, related=related) as call:
                self._client().head_object(Bucket=settings.S3_BUCKET, Key=key)
                call.record(http_status=200, units={"requests": 1})
        except PermanentError as exc:
            if exc.http_status == 404:
                return False
            raise
        return True

    def quarantine(self, key, dest, *, tags, size, owner=None, related=None):
        """Move `key` to `dest`: server-side copy (private, encrypted as configured, tagged), then delete.

        A repeat after a crash is harmless: a copy whose source is gone finds the
        object already at `dest` ("already"), or nowhere ("missing").
        """
        params = {
            "Bucket": settings.S3_BUCKET,
            "Key": dest,
            "CopySource": {"Bucket": settings.S3_BUCKET, "Key": key},
            "MetadataDirective": "COPY",
            "TaggingDirective": "REPLACE",
            "Tagging": urlencode({name: tag_value(value) for name, value in tags.items()}),
        }
        # A copy is a new object: S3 applies neither the source's ACL nor (unless asked) its encryption.
        if settings.S3_OBJECT_ACL:
            params["ACL"] = settings.S3_OBJECT_ACL
        if settings.S3_SSE:
            params["ServerSideEncryption"] = settings.S3_SSE
            if settings.S3_SSE == "aws:kms" and settings.S3_SSE_KMS_KEY_ID:
                params["SSEKMSKeyId"] = settings.S3_SSE_KMS_KEY_ID
        try:
            with _attempt("copy", owner=owner, related=related) as call:
                resp = self._client().copy_object(**params)
                call.record(
                    http_status=resp["ResponseMetadata"].get("HTTPStatusCode"),
                    request_id=resp["ResponseMetadata"].get("RequestId"),
                    units={"requests": 1, "bytes_copied": size},
                )
        except PermanentError as exc:
            if exc.http_status != 404:
                raise
            return "already" if self._exists(dest, owner=owner, related=related) else "missing"
        self.delete(key, owner=owner, related=related)
        return "moved"

    def signed_url(self, key, *, filename_disposition, content_type, ttl):
        """A presigned GET. Signing is local (no request), so it is not a gateway call."""
        require("s3")
        return _storage().url(
            key,
            parameters={"ResponseContentDisposition": filename_disposition, "ResponseContentType": content_type},
            expire=ttl,
        )

    def lifecycle_put(self, rules):
        with _attempt("lifecycle.put") as call:
            resp = self._client().put_bucket_lifecycle_configuration(
                Bucket=settings.S3_BUCKET, LifecycleConfiguration={"Rules": rules}
            )
            call.record(http_status=resp["ResponseMetadata"].get("HTTPStatusCode"), units={"requests": 1})

    def lifecycle_get(self):
        with _attempt("lifecycle.get") as call:
            resp = self._client().get_bucket_lifecycle_configuration(Bucket=settings.S3_BUCKET)
            call.record(http_status=200, units={"requests": 1})
        return resp.get("Rules", [])


# --- Local filesystem -------------------------------------------------------


class LocalBackend:
    """Files under MEDIA_ROOT, readable by the hub's user only. Not a provider: no gateway."""

    name = "local"

    @staticmethod
    def _storage():
        return FileSystemStorage(
            location=settings.MEDIA_ROOT, file_permissions_mode=0o600, directory_permissions_mode=0o700
        )

    def save(self, key, upload, *, content_type, size, owner=None, related=None):
        # A spooled upload is moved into place, not copied.
        name = self._storage().save(key, upload)
        if name != key:
            raise RuntimeError(f"storage renamed {key} to {name}")  # a random key cannot collide
        return "LOCAL"

    def read_into(self, key, consume, *, owner=None, related=None):
        with self._storage().open(key, "rb") as fh:
            return consume(iter(lambda: fh.read(READ_CHUNK), b""))

    def open(self, key):
        return self._storage().open(key, "rb")

    def path(self, key):
        return self._storage().path(key)

    def delete(self, key, *, owner=None, related=None):
        self._storage().delete(key)  # a missing file is not an error

    def quarantine(self, key, dest, *, tags, size, owner=None, related=None):
        """Move the file to `dest` under MEDIA_ROOT (a rename: same filesystem, no copy)."""
        storage = self._storage()
        src_path, dest_path = Path(storage.path(key)), Path(storage.path(dest))
        if not src_path.exists():
            return "already" if dest_path.exists() else "missing"
        dest_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(src_path, dest_path)
        return "moved"

    def list_objects(self, prefix=PREFIX):
        root = Path(settings.MEDIA_ROOT)
        base = root / prefix
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = Path(dirpath) / name
                modified = dt.datetime.fromtimestamp(full.stat().st_mtime, tz=dt.UTC)
                yield full.relative_to(root).as_posix(), modified

    def head_storage_class(self, key, **kwargs):
        return "LOCAL"
