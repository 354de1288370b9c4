"""S3 through the gateway: the adapter that translates botocore's errors once, the cached
S3Storage per credentials and timeout, its transfer config, and how many requests an upload makes.

boto3 makes exactly one attempt per request (`total_max_attempts=1`): the gateway and
Celery are the one retry loop.
"""

import math

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
from storages.backends.s3 import S3Storage

from integrations import egress, gateway
from integrations.errors import (
    ProviderTimeout,
    ProviderUnavailable,
    error_from_http,
)
from integrations.providers import ProviderAdapter, credentials_key


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


def _endpoint():
    """The endpoint the S3 client is built for (the egress proxy is decided for its host)."""
    region = settings.AWS_S3_REGION_NAME or "us-east-1"
    return settings.AWS_S3_ENDPOINT_URL or f"https://s3.{region}.amazonaws.com"


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
            proxies=egress.botocore_proxies(_endpoint()),
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
