"""S3Backend: the documents' operations on S3 (save, read, delete, list, quarantine, signed URLs,
storage class and lifecycle), each request an attempt in the call log.
"""

from urllib.parse import urlencode

from botocore.exceptions import (
    BotoCoreError,
)
from django.conf import settings
from django.core.files import File

from integrations.errors import (
    PermanentError,
    RetryableError,
)
from integrations.registry import require

from .common import PREFIX, READ_CHUNK, SourceReadError, tag_value
from .s3_client import _attempt, _request_count, _storage


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
        """Delete the object: gone from the bucket, on a versioned one too. Safe to repeat."""
        # S3 answers 204 for a key that is already gone, so a repeat is harmless.
        with _attempt("delete", owner=owner, related=related) as call:
            resp = self._client().delete_object(Bucket=settings.S3_BUCKET, Key=key)
            call.record(
                http_status=resp["ResponseMetadata"].get("HTTPStatusCode"),
                request_id=resp["ResponseMetadata"].get("RequestId"),
                units={"requests": 1},
            )
        if resp.get("DeleteMarker"):
            # A versioned bucket (the README asks for one) only hid the bytes behind a delete marker: a
            # deleted document, or the malware a quarantine moved away, would stay as a noncurrent version,
            # for good under quarantine/, which the lifecycle rule does not cover. Keys are random and
            # the hub never reads an old version of one, so every version of this key goes.
            self.delete_versions(key, owner=owner, related=related)

    def delete_versions(self, key, *, exact=True, owner=None, related=None):
        """Delete every version and delete marker of exactly `key` (`exact=False`: of every key under it); how many.

        A key already gone counts as done.
        """
        client = self._client()
        deleted = 0
        while True:
            with _attempt("versions.list", owner=owner, related=related) as call:
                page = client.list_object_versions(Bucket=settings.S3_BUCKET, Prefix=key, MaxKeys=1000)
                call.record(http_status=200, units={"requests": 1})
            items = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                if v["Key"] == key or not exact
            ]
            if not items:
                return deleted
            with _attempt("versions.delete", owner=owner, related=related) as call:
                resp = client.delete_objects(Bucket=settings.S3_BUCKET, Delete={"Objects": items, "Quiet": True})
                call.record(http_status=200, units={"requests": 1})
            errors = resp.get("Errors") or []
            if errors:
                raise RetryableError(
                    "s3", f"{len(errors)} object version(s) could not be deleted: {errors[0].get('Code')}"
                )
            deleted += len(items)

    def deleted_keys(self, prefix):
        """Keys under `prefix` whose latest version is a delete marker: deleted, their bytes kept as noncurrent
        versions (a versioned bucket). One gateway call per page."""
        kwargs = {"Bucket": settings.S3_BUCKET, "Prefix": prefix, "MaxKeys": 1000}
        while True:
            with _attempt("versions.list") as call:
                page = self._client().list_object_versions(**kwargs)
                call.record(http_status=200, units={"requests": 1})
            for marker in page.get("DeleteMarkers", ()):
                if marker.get("IsLatest"):
                    yield marker["Key"]
            if not page.get("IsTruncated"):
                return
            kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page.get("NextVersionIdMarker", ""))

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
