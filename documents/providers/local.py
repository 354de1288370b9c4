"""LocalBackend: the same operations on files under MEDIA_ROOT (development, or no bucket set)."""

import datetime as dt
import os
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage

from .common import PREFIX, READ_CHUNK


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
