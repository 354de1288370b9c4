"""What the privacy app itself holds: the user's exports (their zips are deleted too)."""

from .models import Export
from .registry import PrivacyHolder, register
from .writer import rows


def export_exports(user, out):
    out.json(
        "privacy",
        {
            "exports": rows(
                Export.objects.filter(owner=user),
                ("id", "status", "include_all_versions", "size", "created_at", "finished_at", "expires_at"),
            )
        },
        description="Your earlier exports (when, how big, until when they are kept).",
    )


def erase_exports(user, report):
    from .exports import export_delete_file

    n = 0
    for export in Export.objects.filter(owner=user).exclude(storage_key=""):
        export_delete_file(export)
        n += 1
    report.count("privacy.Export.files", n)
    report.count("privacy.Export", Export.objects.filter(owner=user).delete()[0])
    Export.objects.filter(requested_by=user).update(requested_by=None)


register(
    PrivacyHolder(
        app="privacy",
        models=("privacy.Export",),
        export=export_exports,
        erase=erase_exports,
        description="Your data exports (zip files) and when they expire.",
        retention="zips 7 days (PRIVACY_EXPORT_RETENTION_DAYS); erasure reports forever, without personal data.",
        order=850,  # before integrations re-points the call log (deleting a zip on S3 is a logged call)
    )
)
