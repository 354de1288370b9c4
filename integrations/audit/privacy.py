"""The audit trail (privacy registry): exported, never erased."""

from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .models import AuditEvent


def export_audit(user, out):
    out.json(
        "audit",
        {
            "events": rows(
                AuditEvent.objects.filter(actor_id=user.pk),
                ("at", "action", "target_type", "target_id", "outcome", "ip", "request_id", "details"),
            )
        },
        description="Security-relevant actions you took (downloads, share links, connections, payments, exports).",
    )


register(
    PrivacyHolder(
        app="audit",
        models=("audit.AuditEvent",),
        export=export_audit,
        keep={
            "audit.AuditEvent": (
                "security and legal-claims record (GDPR art. 17(3)(b)/(e)): append-only, kept 7 years; "
                "it names the account by id and user name, never message bodies or files"
            )
        },
        description="The append-only audit trail of sensitive actions.",
        retention="7 years (archived), not erasable.",
    )
)
