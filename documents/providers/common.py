"""What both backends share: the key prefix, the read chunk size, S3-safe tag values and the
error a failed source read raises through the consumer.
"""

import re

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
