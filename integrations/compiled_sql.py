"""Statements the ORM builds once per process and runs with new values each time (issue 11, CPU per row).

The hot writers (the outbox's per-task UPDATEs, every state transition of a
drained webhook batch) run the same few statements with other values
thousands of times, and building them cost the ORM several times what running
them costs PostgreSQL: ~0.2 ms of Python per UPDATE against ~0.05 ms for
executing it. The SQL here is the ORM's own, built once with placeholders
(`Param`) where the values go; each call fills them in, prepared by their
fields as the ORM prepares values it saves, and sent beside the statement
(parameter_cursor), not quoted into it. The same holds for a hot SELECT
(compiled_select: a drain's claim, whose subquery and annotation took the ORM
~2 ms to build and compile for every batch).
"""

import functools

from django.db import connections, router, transaction
from django.db.models import Expression
from django.db.models.sql import UpdateQuery

# More distinct statements than the code holds means a caller builds them from data: run those uncached.
MAX_STATEMENTS = 500


class Param(Expression):
    """A value a statement compiled once leaves open, given at each run."""

    def __init__(self, name, field):
        super().__init__(output_field=field)
        self.name = name

    def as_sql(self, compiler, connection):
        return "%s", [self]


def compiled_update(statements, key, model, build, fields, **values):
    """`queryset.update(**changes)` for `queryset, changes = build(**values)`, its SQL compiled once per process.

    `statements` is the caller's cache, `key` names the statement in it (everything `build` decides on
    besides `values`), `fields` gives each value's model field. Returns the rows updated.
    """
    using = router.db_for_write(model)
    conn = connections[using]
    if not conn.features.update_can_self_select:  # the ORM would run a SELECT first (MySQL): nothing to keep
        queryset, changes = build(**values)
        return queryset.update(**changes)
    compiled = statements.get((key, using))
    if compiled is None:
        queryset, changes = build(**{name: Param(name, fields[name]) for name in values})
        query = queryset.query.chain(UpdateQuery)
        query.add_update_values(changes)
        compiled = query.get_compiler(using).as_sql()
        if len(statements) < MAX_STATEMENTS:
            statements[(key, using)] = compiled
    sql, params = compiled
    params = [p.output_field.get_db_prep_save(values[p.name], conn) if isinstance(p, Param) else p for p in params]
    with transaction.mark_for_rollback_on_error(using), parameter_cursor(conn) as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def compiled_select(statements, key, model, build, fields, **values):
    """`list(queryset)` for `queryset = build(**values)`, its SQL compiled once per process: `model` instances with
    the queryset's annotations set on them, as the ORM would return them (its converters applied).

    `statements`, `key` and `fields` as for compiled_update. Only a queryset of whole rows of `model` (no
    select_related, values() or only()), whose SQL depends on nothing but `key` besides `values`.
    """
    using = router.db_for_write(model)  # where the ORM sends a locking read (select_for_update)
    conn = connections[using]
    compiled = statements.get((key, using))
    if compiled is None:
        queryset = build(**{name: Param(name, fields[name]) for name in values})
        compiler = queryset.query.get_compiler(using)
        # raw() converts the model's own columns, not the annotations: their converters are applied below
        # (SQLite returns a datetime annotation as text; PostgreSQL's driver converts it itself).
        annotations = [
            (name, expr, expr.get_db_converters(conn) + conn.ops.get_db_converters(expr))
            for name, expr in queryset.query.annotation_select.items()
        ]
        compiled = (*compiler.as_sql(), [a for a in annotations if a[2]])
        if len(statements) < MAX_STATEMENTS:
            statements[(key, using)] = compiled
    sql, params, converted = compiled
    params = tuple(p.output_field.get_db_prep_save(values[p.name], conn) if isinstance(p, Param) else p for p in params)
    rows = list(model.objects.raw(sql, params, using=using))
    for row in rows:
        for name, expr, converters in converted:
            value = getattr(row, name)
            for converter in converters:
                value = converter(value, expr, conn)
            setattr(row, name, value)
    return rows


def parameter_cursor(conn):
    """A cursor that sends the values beside the statement on PostgreSQL (elsewhere, the connection's own).

    Django's default psycopg cursor binds client-side: it quotes every value into the SQL text in Python,
    about a third of the CPU of running the inbox's INSERT (17 values, two JSON documents), ~7 us of the
    ~110 of a state transition (a drained event makes two). Sent as parameters (the extended protocol),
    psycopg's C transformer dumps them instead. The statement is never prepared on the server (an unnamed one, parsed each time): that
    costs the client less again and works the same behind pgbouncer in transaction pooling mode.
    The cursor is wrapped as connection.cursor() wraps its own (query logging, execute_wrapper hooks).
    """
    if conn.vendor != "postgresql":
        return conn.cursor()
    conn.close_if_health_check_failed()
    conn.ensure_connection()
    with conn.wrap_database_errors:
        return conn._prepare_cursor(_unprepared_cursor_class()(conn.connection))


@functools.cache
def _unprepared_cursor_class():
    from django.db.backends.postgresql.base import ServerBindingCursor

    class UnpreparedServerBindingCursor(ServerBindingCursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=False, binary=binary)

    return UnpreparedServerBindingCursor
