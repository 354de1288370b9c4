"""The export's zip, written piece by piece to a temporary file: never the whole export in memory.

Each app writes `<app>.json` as a stream of rows (one JSON object of named arrays) and adds files
from iterables of chunks; memory stays at about one chunk plus zlib's window, whatever the size.
"""

import json
import re
import zipfile
from contextlib import contextmanager

from django.core.serializers.json import DjangoJSONEncoder

_ENCODER = DjangoJSONEncoder(ensure_ascii=False)
_UNSAFE = re.compile(r"[^\w.\- ]+")


def safe_name(name, default="file"):
    """A file name safe inside a zip: no directories, no leading dots, at most 120 characters."""
    cleaned = _UNSAFE.sub("_", str(name or "")).strip(" .")[:120]
    return cleaned or default


def rows(queryset, fields=(), *, exclude=(), chunk_size=500):
    """A queryset as JSON-able dicts, streamed (`.values().iterator()`): `fields` or every concrete field."""
    model = queryset.model
    names = list(fields) or [
        f.attname for f in model._meta.concrete_fields if f.name not in exclude and f.attname not in exclude
    ]
    return queryset.order_by("pk").values(*names).iterator(chunk_size=chunk_size)


class ExportWriter:
    """What a holder's `export(user, out)` writes through."""

    def __init__(self, zf, *, include_all_versions=False):
        self.zf = zf
        self.include_all_versions = include_all_versions
        self.files = []  # (arcname, description) for README.txt
        self.counts = {}  # arcname -> {section: rows}
        self.omitted = []  # (arcname, note for README.txt, manifest entry)

    def _open(self, arcname, compress=True):
        info = zipfile.ZipInfo(arcname)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        # force_zip64: a stream of unknown length may pass 4 GiB.
        return self.zf.open(info, "w", force_zip64=True)

    def json(self, app, sections, *, description=""):
        """Write `<app>.json`: {"app": app, "<section>": [row, ...], ...} with each section streamed."""
        arcname = f"{safe_name(app)}.json"
        counts = {}
        with self._open(arcname) as fh:
            fh.write(b'{"app": ' + _ENCODER.encode(app).encode())
            for section, items in sections.items():
                fh.write(b", " + _ENCODER.encode(section).encode() + b": [")
                n = 0
                for row in items:
                    fh.write((b",\n  " if n else b"\n  ") + _ENCODER.encode(row).encode())
                    n += 1
                fh.write(b"\n]" if n else b"]")
                counts[section] = n
            fh.write(b"}\n")
        self.counts[arcname] = counts
        self.files.append((arcname, description or f"What the {app} app holds about you."))
        return counts

    def file(self, arcname, chunks, *, description="", compress=False):
        """Add a file from an iterable of byte chunks; returns the bytes written."""
        size = 0
        with self._open(arcname, compress=compress) as fh:
            for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
        if description:
            self.files.append((arcname, description))
        return size

    @contextmanager
    def open(self, arcname, *, description="", compress=False):
        """A writable stream for one file of the zip (for producers that push chunks)."""
        with self._open(arcname, compress=compress) as fh:
            yield fh
        if description:
            self.files.append((arcname, description))

    def omit(self, arcname, *, app, reason, note, **ids):
        """A file listed for the export but not in it (deleted while the export ran): README.txt names it and
        says why; the manifest, which holds no personal data, keeps only the app, the ids and the reason."""
        self.omitted.append((arcname, note, {"app": app, **ids, "reason": reason}))

    def text(self, arcname, text):
        with self._open(arcname) as fh:
            fh.write(text.encode())


def dumps(value):
    return json.dumps(value, cls=DjangoJSONEncoder)
