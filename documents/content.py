"""What an upload is, decided from its bytes: file names, types, the whitelist.

The client's file name and Content-Type are claims. The type comes from the
content (magic bytes through `filetype`, the zip directory for Office OOXML, a
text check for plain text and CSV); a claim that disagrees with the content is
refused, so `invoice.pdf` that is really an executable never gets in.
"""

import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass

import filetype

MAX_FILENAME_LENGTH = 200
DEFAULT_STEM = "document"

OOXML_WORD = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
OOXML_EXCEL = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
OOXML_POWERPOINT = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
LEGACY_OFFICE = {"application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint"}

# Accepted types and the extensions that may carry each.
ALLOWED_TYPES = {
    "application/pdf": {"pdf"},
    "application/msword": {"doc", "dot"},
    "application/vnd.ms-excel": {"xls", "xlt"},
    "application/vnd.ms-powerpoint": {"ppt", "pps", "pot"},
    OOXML_WORD: {"docx"},
    OOXML_EXCEL: {"xlsx"},
    OOXML_POWERPOINT: {"pptx"},
    "text/plain": {"txt", "text", "log", "md"},
    "text/csv": {"csv"},
    "image/png": {"png"},
    "image/jpeg": {"jpg", "jpeg", "jpe"},
    "image/gif": {"gif"},
    "image/webp": {"webp"},
    "image/heic": {"heic", "heif"},
}

# Claimed types that name one of ours under another spelling.
_CLAIM_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/heif": "image/heic",
    "application/x-pdf": "application/pdf",
    "application/csv": "text/csv",
    "text/x-csv": "text/csv",
    "text/comma-separated-values": "text/csv",
    "text/markdown": "text/plain",
}
# Claims that say nothing: browsers send these for types they do not know.
_VAGUE_CLAIMS = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}

_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def filename_sanitise(raw):
    """A safe display name: no directories, no control or bidi characters, length-capped.

    It is only ever shown and put in Content-Disposition; storage keys are random.
    """
    name = unicodedata.normalize("NFC", str(raw or ""))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Category C: control (\x00, \n), format (U+202E right-to-left override,
    # which turns "cod.exe" into what looks like "exe.doc"), unassigned, private use.
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C"))
    name = re.sub(r'[<>:"|?*]', "_", name)
    name = re.sub(r"\s+", " ", name).strip().rstrip(" .")
    bare = name.lstrip(" .")  # no hidden file on the user's disk when they download it
    if not bare:
        return DEFAULT_STEM
    if name.startswith(".") and "." not in bare:
        # ".pdf" is a name whose stem was deleted, not a dotfile: its extension
        # stays one, so the type check judges it as it would "report.pdf" and
        # the download keeps it.
        name = f"{DEFAULT_STEM}.{bare}"
    else:
        name = bare
    stem, ext = os.path.splitext(name)
    if stem.lower() in _WINDOWS_RESERVED:
        stem = f"_{stem}"
    ext = ext[:16]
    return stem[: MAX_FILENAME_LENGTH - len(ext)] + ext


def extension_of(filename):
    ext = os.path.splitext(filename)[1]
    return ext[1:].lower() if ext else ""


@dataclass
class Sniffed:
    """What the upload handler learnt while the bytes streamed past."""

    head: bytes = b""
    size: int = 0
    sha256: str = ""
    has_nul: bool = False
    utf8: bool = True


class ContentRejected(Exception):
    def __init__(self, code, detail, **extra):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


def _ooxml_from_zip(fileobj):
    """The OOXML type from the zip's directory (entries may come in any order), or None."""
    try:
        fileobj.seek(0)
        with zipfile.ZipFile(fileobj) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
        # NotImplementedError: the directory names a zip version Python cannot read. The bytes are
        # the client's to choose, so that is a zip we cannot read (a 415), never a 500.
        return None
    finally:
        fileobj.seek(0)
    if "[Content_Types].xml" not in names:
        return None
    for prefix, mime in (("word/", OOXML_WORD), ("xl/", OOXML_EXCEL), ("ppt/", OOXML_POWERPOINT)):
        if any(n.startswith(prefix) for n in names):
            return mime
    return None


_MARKUP = re.compile(rb"^\s*(<\?xml|<!doctype\s+html|<html|<head|<body|<script|<svg|<iframe|<a\s|<img\s|<!--)", re.I)


def _text_type(sniffed):
    """text/plain for bytes that are text, text/html for markup, None for binary."""
    if sniffed.has_nul:
        return None
    head = sniffed.head
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if _MARKUP.match(head[:1024]):
        return "text/xml" if head.lstrip()[:5].lower() == b"<?xml" else "text/html"
    if not sniffed.utf8:
        # Legacy 8-bit text (Excel's cp1252 CSV): allowed only without control bytes.
        controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
        if controls:
            return None
    return "text/plain"


def detect_type(fileobj, sniffed):
    """The content's MIME type, from its bytes only."""
    kind = filetype.guess(sniffed.head)
    if kind is not None:
        if kind.mime == "application/zip":
            return _ooxml_from_zip(fileobj) or "application/zip"
        if kind.mime == "image/heif":
            return "image/heic"
        return kind.mime
    if not sniffed.head and not sniffed.size:
        return "application/x-empty"
    return _text_type(sniffed) or "application/octet-stream"


def _claim(content_type):
    claim = (content_type or "").split(";", 1)[0].strip().lower()
    return _CLAIM_ALIASES.get(claim, claim)


def _agrees(detected, claimed_type):
    if claimed_type == detected:
        return True
    # Plain text and CSV are the same bytes; the claim picks which.
    if detected == "text/plain" and claimed_type == "text/csv":
        return True
    # Windows sends application/vnd.ms-excel for any .csv.
    if detected == "text/plain" and claimed_type == "application/vnd.ms-excel":
        return True
    # filetype tells the OLE2 formats apart by heuristics only.
    return detected in LEGACY_OFFICE and claimed_type in LEGACY_OFFICE


def _type_for_extension(ext):
    return next((mime for mime, exts in ALLOWED_TYPES.items() if ext in exts), None)


def classify_upload(*, fileobj, sniffed, filename, claimed_content_type):
    """The accepted MIME type of an upload, or ContentRejected (-> 415) naming content and claim."""
    detected = detect_type(fileobj, sniffed)
    claimed = _claim(claimed_content_type)
    ext = extension_of(filename)
    ext_type = _type_for_extension(ext) if ext else None

    if detected == "application/x-empty":
        raise ContentRejected("empty_file", "The file is empty.")

    if claimed not in _VAGUE_CLAIMS and not _agrees(detected, claimed):
        raise ContentRejected(
            "type_mismatch",
            f"The file's content is {detected} but it was sent as {claimed}; send the file with its real type.",
            detected_type=detected,
            claimed_type=claimed,
        )
    if ext and ext_type is None and detected not in ALLOWED_TYPES:
        pass  # an executable named .exe: refused below as unsupported, not as a mismatch
    elif ext and (ext_type is None or not _agrees(detected, ext_type)):
        raise ContentRejected(
            "type_mismatch",
            f"The file's content is {detected} but its name ends in .{ext}; rename it or send the right file.",
            detected_type=detected,
            extension=ext,
        )
    if detected == "text/plain" and ("csv" in (ext, claimed.rsplit("/", 1)[-1]) or ext_type == "text/csv"):
        detected = "text/csv"
    if detected in LEGACY_OFFICE and ext_type in LEGACY_OFFICE:
        detected = ext_type
    if detected not in ALLOWED_TYPES:
        raise ContentRejected(
            "unsupported_type",
            f"The file's content is {detected}, which is not accepted. Accepted: PDF, Word, Excel, PowerPoint, "
            "plain text, CSV, PNG, JPEG, GIF, WebP and HEIC.",
            detected_type=detected,
        )
    return detected
