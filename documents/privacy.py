"""What documents holds about a user (privacy registry): files in S3 or on disk, every version."""

from django.conf import settings
from django.db.models import F

from privacy.registry import PrivacyHolder, register
from privacy.storage import s3_delete_all_versions
from privacy.writer import rows, safe_name

from .models import Document, DocumentVersion
from .providers import backend_for

VERSION_FIELDS = (
    "id",
    "document_id",
    "number",
    "filename",
    "content_type",
    "size",
    "sha256",
    "storage_class",
    "scan_status",
    "scanned_at",
    "created_at",
)


def export_documents(user, out):
    versions = DocumentVersion.objects.filter(document__owner=user)
    out.json(
        "documents",
        {
            "documents": rows(Document.objects.filter(owner=user), exclude=("owner",)),
            "versions": rows(versions, VERSION_FIELDS),
        },
        description="Your documents and every version's name, type, size, checksum and scan result.",
    )
    chosen = versions if out.include_all_versions else versions.filter(document__current_version_id=F("id"))
    # Infected files stay out of the zip: the export must not carry malware to whoever opens it.
    chosen = chosen.exclude(scan_status=DocumentVersion.ScanStatus.INFECTED).order_by("document_id", "number")
    for version in chosen.iterator(chunk_size=200):
        arcname = f"documents/{version.document_id}/v{version.number}-{safe_name(version.filename)}"
        backend_for(version.backend).read_into(
            version.storage_key,
            lambda chunks, arcname=arcname: out.file(arcname, chunks),
            owner=user,
        )
    out.files.append(("documents/", "Your files: documents/<document id>/v<version>-<file name>."))


def erase_documents(user, report):
    """Every stored object of every version (on S3: every object version and delete marker), then the rows."""
    objects = 0
    for version in DocumentVersion.objects.filter(document__owner=user).iterator(chunk_size=200):
        if version.backend == DocumentVersion.Backend.S3:
            objects += s3_delete_all_versions(version.storage_key, owner=user)
        else:
            backend_for(version.backend).delete(version.storage_key, owner=user)
            objects += 1
    report.provider("s3.objects_deleted" if settings.S3_BUCKET else "local.files_deleted", objects)
    Document.objects.filter(owner=user).update(current_version=None)
    report.count("documents.DocumentVersion", DocumentVersion.objects.filter(document__owner=user).delete()[0])
    report.count("documents.Document", Document.objects.filter(owner=user).delete()[0])


register(
    PrivacyHolder(
        app="documents",
        models=("documents.Document", "documents.DocumentVersion"),
        export=export_documents,
        erase=erase_documents,
        description="Files you uploaded and every version (S3 with versioning, or the server's disk).",
        retention="until you delete them; deleted documents are purged with every S3 version.",
    )
)
