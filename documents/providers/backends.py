"""Which backend holds a document: the current one (S3 when S3_BUCKET is set), or the one a version
was stored with.
"""

from django.conf import settings

from .local import LocalBackend
from .s3 import S3Backend


def current_backend():
    return backend_for("s3" if settings.S3_BUCKET else "local")


def backend_for(name):
    if name == "s3":
        return S3Backend()
    if name == "local":
        return LocalBackend()
    raise ValueError(f"unknown storage backend {name!r}")
