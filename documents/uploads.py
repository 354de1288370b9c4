"""The upload handler that enforces the size limit while the body streams.

Django's multipart parser hands each chunk (64 KiB) to the handlers in order;
this one runs first, counts the bytes that really arrive (never trusting
Content-Length), and stops the upload the moment the count passes the limit,
before the next handler writes the chunk anywhere. The handlers after it are
Django's defaults, so a file above FILE_UPLOAD_MAX_MEMORY_SIZE is spooled to a
temporary file, never held in memory.

While counting it also keeps what the type check needs (the first bytes, a
SHA-256, whether the bytes could be text), so the file is read once.
"""

import codecs
import hashlib

from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from integrations.errors import DomainError

from .content import Sniffed

HEAD_BYTES = 8192
# Multipart framing around the file (boundaries, part headers, small fields).
MULTIPART_SLACK_BYTES = 64 * 1024


def _mib(n):
    return f"{n / (1024 * 1024):.1f}".rstrip("0").rstrip(".") + " MiB"


class UploadTooLarge(DomainError):
    """413 JSON. `reason` is "max_bytes" (DOCUMENT_MAX_BYTES) or "quota" (what is left of the user's quota)."""

    def __init__(self, limit, reason):
        self.limit = limit
        self.reason = reason
        if reason == "quota":
            super().__init__(
                413,
                "storage_quota_exceeded",
                f"This upload does not fit in your storage quota ({_mib(limit)} left); delete documents or versions first.",
                limit_bytes=limit,
            )
        else:
            super().__init__(
                413,
                "file_too_large",
                f"The file is larger than the {_mib(limit)} limit; upload a smaller file.",
                limit_bytes=limit,
            )


class SizeLimitUploadHandler(FileUploadHandler):
    """`limit_for(request)` -> (max bytes, reason), asked once the user is known."""

    def __init__(self, request, limit_for):
        super().__init__(request)
        self._limit_for = limit_for
        self.limit = None
        self.reason = ""
        self.received = 0
        self.exceeded = None
        self.sniffed = {}
        self._current = None

    def _resolve_limit(self):
        if self.limit is None:
            self.limit, self.reason = self._limit_for(self.request)

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self._resolve_limit()
        # An honest Content-Length above the limit is refused before a byte is read.
        if content_length and content_length > self.limit + MULTIPART_SLACK_BYTES:
            self.exceeded = UploadTooLarge(self.limit, self.reason)
            raise self.exceeded
        return None

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        self._current = Sniffed()
        self._hash = hashlib.sha256()
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.sniffed[field_name] = self._current

    def receive_data_chunk(self, raw_data, start):
        self._resolve_limit()
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = UploadTooLarge(self.limit, self.reason)
            # Django closes (and so deletes) the partial temporary file and
            # reads no further than Content-Length, already checked above.
            raise StopUpload(connection_reset=False)
        sniffed = self._current
        if len(sniffed.head) < HEAD_BYTES:
            sniffed.head += raw_data[: HEAD_BYTES - len(sniffed.head)]
        sniffed.size += len(raw_data)
        self._hash.update(raw_data)
        if not sniffed.has_nul and b"\x00" in raw_data:
            sniffed.has_nul = True
        if sniffed.utf8:
            try:
                self._utf8.decode(raw_data)
            except UnicodeDecodeError:
                sniffed.utf8 = False
        return raw_data

    def file_complete(self, file_size):
        sniffed = self._current
        sniffed.sha256 = self._hash.hexdigest()
        if sniffed.utf8:
            try:
                self._utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                sniffed.utf8 = False
        return None  # the next handler (memory or temporary file) makes the file
