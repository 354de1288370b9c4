"""What both backends share: the key prefix, the read chunk size, S3-safe tag values and the
error a failed source read raises through the consumer.
"""

import re

from integrations.errors import PermanentError

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


def object_missing(exc):
    """Whether a read failed because the object is not there (deleted or moved away), and for no other reason.

    The filesystem's FileNotFoundError, or S3's 404 NoSuchKey. Never NoSuchBucket (the hub is misconfigured),
    nor a 403 (which S3 also answers for a missing key when the hub may not list the bucket: a permission to
    fix, not a file to skip). Whether a missing object is an error is the caller's to judge from its row.
    """
    if isinstance(exc, FileNotFoundError):
        return True
    return isinstance(exc, PermanentError) and exc.http_status == 404 and exc.code == "NoSuchKey"
