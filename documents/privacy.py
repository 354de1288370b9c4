"""What documents holds about a user (privacy registry): files in S3 or on disk, every version."""

from django.conf import settings
from django.db.models import F

from integrations.models import Alert
from privacy.registry import PrivacyHolder, register
from privacy.storage import s3_delete_all_versions
from privacy.writer import rows, safe_name

from .models import Document, DocumentVersion
from .providers import backend_for, object_missing
from .services import quarantine_key_for

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
        try:
            backend_for(version.backend).read_into(
                version.storage_key,
                lambda chunks, arcname=arcname: out.file(arcname, chunks),
                owner=user,
            )
        except Exception as exc:
            reason = _gone_since_listed(version) if object_missing(exc) else None
            if reason is None:
                raise  # a refusal, an outage, or a file lost under a live row: the export must not hide it
            out.omit(
                arcname,
                app="documents",
                reason=reason,
                note=OMITTED_NOTES[reason],
                document_id=version.document_id,
                version=version.number,
            )
    out.files.append(("documents/", "Your files: documents/<document id>/v<version>-<file name>."))


OMITTED_NOTES = {
    "deleted": "the document was deleted while this export was being written.",
    "infected": "the scan found malware in it while this export was being written.",
}


def _gone_since_listed(version):
    """Why a version listed by the export may rightly have no object by the time it is read, or None.

    The purge deletes the objects of a deleted document before its rows, and the quarantine marks a version
    infected before it moves the object: either way the row says so by the time the object is gone. A row
    that still says active and clean means the object was lost, which is a fault, not a race.
    """
    row = DocumentVersion.objects.filter(pk=version.pk).values("storage_key", "scan_status", "document__state").first()
    if row is None or row["document__state"] != Document.State.ACTIVE:
        return "deleted"
    if row["scan_status"] == DocumentVersion.ScanStatus.INFECTED:
        return "infected"
    if row["storage_key"] != version.storage_key:
        return "deleted"
    return None


def erase_documents(user, report):
    """Every stored object of every version (on S3: every object version and delete marker), then the rows."""
    objects = 0
    alert_keys = {}
    for version in DocumentVersion.objects.filter(document__owner=user).iterator(chunk_size=200):
        found = version.scan_detail if version.scan_status == DocumentVersion.ScanStatus.INFECTED else "malware"
        alert_keys[f"document_infected:{version.pk}"] = (version.document_id, version.number, found)
        keys = [version.storage_key]
        if version.scan_status == DocumentVersion.ScanStatus.INFECTED:
            # A quarantine move copies the object, deletes the original, then records the new key: a move cut
            # short leaves the copy under a key the row does not name yet, and one made by a plain delete on a
            # versioned bucket left the original's bytes as a noncurrent version. Both are the user's file.
            keys.append(_other_quarantine_key(version.storage_key))
        if version.backend == DocumentVersion.Backend.S3:
            objects += sum(s3_delete_all_versions(key, owner=user) for key in keys)
        else:
            for key in keys:
                backend_for(version.backend).delete(key, owner=user)
            objects += 1
    report.provider("s3.objects_deleted" if settings.S3_BUCKET else "local.files_deleted", objects)
    report.count("integrations.Alert.redacted", _redact_infected_alerts(alert_keys))
    Document.objects.filter(owner=user).update(current_version=None)
    report.count("documents.DocumentVersion", DocumentVersion.objects.filter(document__owner=user).delete()[0])
    report.count("documents.Document", Document.objects.filter(owner=user).delete()[0])


def _other_quarantine_key(storage_key):
    """The quarantined key of an original, or the original of a quarantined key (services.quarantine_key_for)."""
    prefix = settings.DOCUMENT_QUARANTINE_PREFIX
    return storage_key[len(prefix) :] if storage_key.startswith(prefix) else quarantine_key_for(storage_key)


def _redact_infected_alerts(alert_keys):
    """The infected-file alert (documents.services.version_scan) names the file: the alert stays for staff,
    the name goes. `alert_keys`: {dedupe key: (document id, version number, what was found)}."""
    redacted = 0
    for alert in Alert.objects.filter(dedupe_key__in=list(alert_keys)).only("pk", "dedupe_key"):
        document_id, number, found = alert_keys[alert.dedupe_key]
        message = (
            f"Document {document_id} version {number} of an erased user was infected with {found}; "
            "the file was deleted with the account."
        )
        redacted += Alert.objects.filter(pk=alert.pk).update(message=message)
    return redacted


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
