"""The prune exception of the append-only trigger now needs a verified archive too.

Before, any transaction that ran `SET LOCAL hub.audit_prune = 'on'` could
delete any event. Now the trigger lets a DELETE through only when that
setting is on *and* a verified AuditArchive covers the row (its id between
the archive's first and last id, on the archive's day): a session that
merely knows the setting's name still cannot delete what no verified
archive object holds. UPDATE stays refused outright.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('hub.audit_prune', true) = 'on' AND EXISTS (
        SELECT 1 FROM audit_auditarchive a
        WHERE a.verified_at IS NOT NULL
          AND OLD.id BETWEEN a.first_id AND a.last_id
          AND OLD.at >= a.day::timestamp AT TIME ZONE 'UTC'
          AND OLD.at < (a.day + 1)::timestamp AT TIME ZONE 'UTC'
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

PREVIOUS = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('hub.audit_prune', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(sql)  # no params: the `%` in RAISE is not a placeholder

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_auditarchive")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(PREVIOUS))]
