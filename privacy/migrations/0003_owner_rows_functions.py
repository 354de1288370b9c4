"""PostgreSQL functions for the writers of a user's accounting rows (integrations.erasing): their owners' locks
taken shared, then the owners' started erasures read, in one statement whose plans PL/pgSQL keeps per session.

As two statements of the writer's query string (the lock, then a read of privacy_erasure) the check cost
PostgreSQL ~0.1 ms more per row written at once, most of it planning the read again every time; a VOLATILE
function reads with a snapshot taken after its locks are held, as the second statement did."""

from django.db import migrations

# The owners' locks, shared: integrations.erasing.LOCK_NAME's names, several taken in the order of their text
# (COLLATE "C": Python's order, as owner_lock sorts them).
LOCKS = """
    IF cardinality(owners) = 1 THEN
        PERFORM pg_advisory_xact_lock_shared(hashtextextended('calllog.owner:' || owners[1], 0));
    ELSE
        FOR lock_name IN SELECT 'calllog.owner:' || o FROM unnest(owners) AS o ORDER BY ('calllog.owner:' || o) COLLATE "C"
        LOOP
            PERFORM pg_advisory_xact_lock_shared(hashtextextended(lock_name, 0));
        END LOOP;
    END IF;
"""
# Started (or done): privacy.erasure.ERASING and DONE (tests/privacy/test_erasure_direct_rows.py holds them equal).
STARTED = "e.subject_id = ANY(owners) AND e.status IN ('running', 'retrying', 'failed', 'done')"

CREATE = f"""
CREATE OR REPLACE FUNCTION privacy_owner_erasures(VARIADIC owners bigint[])
RETURNS TABLE (erased bigint, pseudonym_name text) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lock_name text;
BEGIN
{LOCKS}
    RETURN QUERY SELECT e.subject_id, e.pseudonym::text FROM privacy_erasure AS e WHERE {STARTED};
END
$$;

CREATE OR REPLACE FUNCTION privacy_owner_rows_guard(VARIADIC owners bigint[])
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lock_name text;
    name text;
BEGIN
{LOCKS}
    SELECT min(e.pseudonym) INTO name FROM privacy_erasure AS e WHERE {STARTED};
    IF name IS NOT NULL THEN
        RAISE EXCEPTION 'erasure started: %', name USING ERRCODE = 'P0001';
    END IF;
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS privacy_owner_rows_guard(VARIADIC bigint[]);
DROP FUNCTION IF EXISTS privacy_owner_erasures(VARIADIC bigint[]);
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)  # no parameters: the "%" of RAISE stays as it is


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("privacy", "0002_erased_reference"),
    ]

    operations = [migrations.RunPython(create, drop)]
