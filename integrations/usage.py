"""Roll-ups, budgets and failure-rate alerts, kept current as calls are recorded."""

import bisect
import datetime as dt
import functools
import math
import re
import time
from decimal import Decimal

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from .aio import at_once, can_send_at_once, commit_without_flush_wait
from .alerts import alert_raise
from .erasing import guard_statements
from .models import LATENCY_BOUNDS_MS, Alert, Budget, ProviderCall, ProviderRollup, UsageRollup
from .units import UNIT_COLUMNS, units_split


def latency_bucket(latency_ms):
    """Index of ProviderRollup's latency bucket for one call (bisect: the first bound >= latency)."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


_OUTCOME_COLUMNS = {o.value: o.value for o in ProviderCall.Outcome}
# Calls that count in no error figure: answered, or left by their caller (ProviderCall.Outcome.CANCELLED).
_NOT_FAILED = (ProviderCall.Outcome.OK, ProviderCall.Outcome.CANCELLED)
_USAGE_SUMS = ["calls", "errors", "cost_usd", "latency_ms_sum", *UNIT_COLUMNS]
_PROVIDER_SUMS = [
    "calls",
    *_OUTCOME_COLUMNS.values(),
    "cost_usd",
    "latency_ms_sum",
    *UNIT_COLUMNS,
    *(f"l{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1)),
]


def sql_number(value):
    """A number as an SQL literal, for the roll-up increments written into the statement's text.

    The call-log statement adds ~100 amounts to two roll-up rows. As `%s` parameters they made it
    too long for psycopg's statement cache (4,096 bytes, 50 parameters), so psycopg parsed all 9 kB
    of it again for every provider call (~0.25 ms); written as literals, only the call row's own
    values are parameters. psycopg binds client-side (Django's cursor), so PostgreSQL sees the same
    text either way. Only numbers get here: anything else is a TypeError, never text in SQL."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"not a roll-up amount: {value!r}")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "'NaN'::float8" if math.isnan(value) else ("'Infinity'::float8" if value > 0 else "'-Infinity'::float8")
    return format(value, "f") if isinstance(value, Decimal) else repr(value)


def upsert_sql(table, keys, sums, conflict, rows=1, added=None):
    """INSERT ... ON CONFLICT adding `sums`: the key columns are `%s` parameters, the sums `{}` slots for
    sql_number literals (fill with str.format).

    `added`: the columns an existing row is added to (default all of `sums`). A call adds 0 to most of the
    per-provider roll-up's ~90 columns (one latency bucket, one outcome, the units it used), and adding
    them all cost PostgreSQL ~0.3 ms of every provider call's ~1.6 (bench_gateway); the new row's INSERT
    still names every column."""
    qn = connection.ops.quote_name
    cols = [*keys, *sums]
    updates = ", ".join(f"{qn(c)} = {qn(table)}.{qn(c)} + EXCLUDED.{qn(c)}" for c in (sums if added is None else added))
    one = f"({', '.join(['%s'] * len(keys) + ['{}'] * len(sums))})"
    return (
        f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in cols)}) VALUES {', '.join([one] * rows)} "
        f"ON CONFLICT {conflict} DO UPDATE SET {updates}"
    )


@functools.lru_cache(maxsize=1024)
def _pg_call_and_rollup_sql(with_owner, usage_added, provider_added):
    # Built once per process for each set of columns calls add to (an outcome, a latency bucket, the units
    # used: a few hundred at most): on the hot path of every provider call, quoting ~500 names each time
    # cost more than the statement's own planning.
    qn = connection.ops.quote_name
    call_fields = [f for f in ProviderCall._meta.concrete_fields if not f.primary_key]
    conflict = "(hour, provider, owner_id)" if with_owner else "(hour, provider) WHERE owner_id IS NULL"
    usage = upsert_sql(
        UsageRollup._meta.db_table, ["hour", "provider", "owner_id"], _USAGE_SUMS, conflict, added=usage_added
    )
    per_provider = upsert_sql(
        ProviderRollup._meta.db_table, ["hour", "provider"], _PROVIDER_SUMS, "(hour, provider)", added=provider_added
    )
    return (
        f"WITH c AS (INSERT INTO {qn(ProviderCall._meta.db_table)} ({', '.join(qn(f.column) for f in call_fields)}) "
        f"VALUES ({', '.join(['%s'] * len(call_fields))}) RETURNING id), "
        f"p AS ({per_provider}) "
        f"{usage} RETURNING (SELECT id FROM c)"
    ), call_fields


def _rollup_values(*, outcome, latency_ms, units, cost_usd):
    """(UsageRollup increments, ProviderRollup increments) for one call, column -> amount."""
    split = units_split(units)
    usage = {
        "calls": 1,
        "errors": 0 if outcome in _NOT_FAILED else 1,
        "cost_usd": cost_usd,
        "latency_ms_sum": latency_ms,
        **split,
    }
    bucket = latency_bucket(latency_ms)
    per_provider = {
        "calls": 1,
        **{column: 1 if value == outcome else 0 for value, column in _OUTCOME_COLUMNS.items()},
        "cost_usd": cost_usd,
        "latency_ms_sum": latency_ms,
        **split,
        **{f"l{i}": 1 if i == bucket else 0 for i in range(len(LATENCY_BOUNDS_MS) + 1)},
    }
    return usage, per_provider


def call_record(call):
    """Insert the call-log row and add it to its hourly roll-ups (per owner and per provider).

    On PostgreSQL this is one statement (a CTE insert plus two upserts), the
    cheapest way to keep all three exact on the hot path of every provider
    call; elsewhere (SQLite under `make run`) the ORM does the same in steps.

    Outside a transaction of the caller's (a task, a view calling a provider),
    its commit does not wait for the disk flush (integrations.aio.at_once): a
    synchronous commit waited for the WAL flush once per provider call, 0.1 ms
    on the bench machine's disk when quiet but 3.4 ms while other work used it
    (pg_test_fsync), longer than the rest of a worker's job, and a network
    disk or a synchronous replica costs milliseconds every time (issue 11,
    bench_scaleout). The row and roll-ups stay all or nothing; what a PostgreSQL crash (not a hub
    crash) can lose is the last ~0.6 s of them, and a synchronous commit after
    it (the domain row a task then updates: a payment's, an SMS's) flushes it
    with its own. Inside the caller's transaction its commit decides.

    A row of a user whose erasure has started is written for the erasure's pseudonym, without its error text
    (integrations.erasing), and returned as written (a copy of `call`).
    """
    if connection.vendor != "postgresql":
        with transaction.atomic():
            call = _owned_now(call)
            call.save(force_insert=True)
            rollup_record_call(call)
        return call
    if can_send_at_once():
        # The owner's lock and the check that no erasure of theirs has started go in the same round trip
        # (integrations.erasing). If one has (or the row failed otherwise), nothing was written: the row is
        # written again below, for the pseudonym, or fails again with its own error.
        guard = guard_statements([call.owner_id])
        try:
            return call_recorded_as(call, at_once([*guard, call_record_statement(call)])[-1])
        except DatabaseError:
            if not guard:
                raise
        with transaction.atomic():
            commit_without_flush_wait()
            return _call_record_here(_owned_now(call))
    return _call_record_here(_owned_now(call))


def _owned_now(call):
    """The row as it is written now in the caller's transaction (integrations.privacy.calls_as_owned_now)."""
    if call.owner_id is None:
        return call
    from .privacy import calls_as_owned_now

    return calls_as_owned_now([call])[0]


def _call_record_here(call):
    """call_record's statement in the caller's transaction (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(*call_record_statement(call))
        return call_recorded_as(call, cursor.fetchone())


def call_record_statement(call):
    """call_record's one PostgreSQL statement as (sql, params); its one result row is the call's id
    (call_recorded_as). For a caller that sends it with others in one round trip (integrations.aio.at_once)."""
    usage, per_provider = _rollup_values(
        outcome=call.outcome, latency_ms=call.latency_ms, units=call.units, cost_usd=call.cost_usd
    )
    sql, call_fields = _pg_call_and_rollup_sql(
        call.owner_id is not None, _nonzero(usage, _USAGE_SUMS), _nonzero(per_provider, _PROVIDER_SUMS)
    )
    call_values = [f.get_db_prep_save(f.pre_save(call, add=True), connection) for f in call_fields]
    hour = call.created_at.replace(minute=0, second=0, microsecond=0)
    sums = [*(per_provider[c] for c in _PROVIDER_SUMS), *(usage[c] for c in _USAGE_SUMS)]
    params = call_values + [hour, call.provider] + [hour, call.provider, call.owner_id]
    return sql.format(*map(sql_number, sums)), params


def call_recorded_as(call, row):
    """`call` as saved, from call_record_statement's result row."""
    call.pk = row[0]
    call._state.adding = False
    call._state.db = connection.alias
    return call


def calls_record(calls):
    """call_record for several calls in one statement (PostgreSQL): their rows, and each roll-up row they
    touch added to once with their sums. For the batch writer of answered web requests (gateway.batchlog), in its
    transaction, with the rows as it has them (their owners' erasures are its to check: calls_as_owned_now)."""
    if connection.vendor != "postgresql":
        for call in calls:
            call.save(force_insert=True)
            rollup_record_call(call)
        return calls
    if len(calls) < 2:
        for call in calls:
            _call_record_here(call)
        return calls
    insert, params = _calls_insert(calls)
    rollups, rollup_params, sums = _rollup_upserts(calls)
    statements = [insert, *rollups]
    *first, last = statements
    sql = "WITH " + ", ".join(f"s{i} AS ({stmt})" for i, stmt in enumerate(first)) + " " + last
    with connection.cursor() as cursor:
        cursor.execute(sql.format(*map(sql_number, sums)), params + rollup_params)
    return calls


def calls_record_once(calls):
    """calls_record for rows that may be written twice (gateway.handoff: a batch retried after a crash that
    came after its commit): each call carries a unique `handoff_id`; a row already in the log is not
    inserted again and only the rows inserted here are added to the roll-ups, in the same transaction, so
    rows and roll-ups count each call once however often its batch is written. Returns the calls inserted.
    Inside the caller's transaction (its atomic block), which must hold both statements."""
    if connection.vendor != "postgresql":
        seen = set(
            ProviderCall.objects.filter(handoff_id__in=[c.handoff_id for c in calls]).values_list(
                "handoff_id", flat=True
            )
        )
        new = [c for c in calls if c.handoff_id not in seen]
        for call in new:
            call.save(force_insert=True)
            rollup_record_call(call)
        return new
    insert, params = _calls_insert(calls, as_given=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"{insert} ON CONFLICT (handoff_id) WHERE handoff_id IS NOT NULL DO NOTHING RETURNING id, handoff_id",
            params,
        )
        ids = {handoff_id: pk for pk, handoff_id in cursor.fetchall()}
        new = [c for c in calls if c.handoff_id in ids]
        if not new:
            return new
        rollups, rollup_params, sums = _rollup_upserts(new)
        *first, last = rollups
        sql = ("WITH " + ", ".join(f"s{i} AS ({stmt})" for i, stmt in enumerate(first)) + " " if first else "") + last
        cursor.execute(sql.format(*map(sql_number, sums)), rollup_params)
    for call in new:
        call_recorded_as(call, (ids[call.handoff_id],))
    return new


def _calls_insert(calls, *, as_given=False):
    """One INSERT of the call-log rows of `calls`, as (sql, params). `as_given`: each row's values as they
    are, its created_at the call's, not the INSERT's time (auto_now_add): a handed-off row is written later.

    The rows go as one array per column (`SELECT * FROM unnest(...)`), so the statement's text is the same
    for any number of rows: psycopg splits a statement's text into parts once and keeps the result for a
    short text with few parameters, and re-split the text of `VALUES (%s, ...), (%s, ...), ...` (20
    parameters a row) at every batch, about a fifth of the CPU a Celery worker's drainer spent writing a
    handed-off batch (issue 11, bench_scaleout)."""
    call_fields = _call_fields()
    columns = [[] for _ in call_fields]
    for call in calls:
        for values, f in zip(columns, call_fields, strict=True):
            values.append(
                f.get_db_prep_save(getattr(call, f.attname) if as_given else f.pre_save(call, add=True), connection)
            )
    return _calls_insert_sql(), columns


def _call_fields():
    return [f for f in ProviderCall._meta.concrete_fields if not f.primary_key]


@functools.cache
def _calls_insert_sql():
    qn = connection.ops.quote_name
    call_fields = _call_fields()
    # Each array as its column's type without a length or precision: an explicit cast to varchar(32)
    # would cut a longer value short where the INSERT refuses it, as it did from VALUES.
    arrays = ", ".join(f"%s::{re.sub(r'[(].*[)]', '', f.db_type(connection))}[]" for f in call_fields)
    return (
        f"INSERT INTO {qn(ProviderCall._meta.db_table)} ({', '.join(qn(f.column) for f in call_fields)}) "
        f"SELECT * FROM unnest({arrays})"
    )


def _rollup_upserts(calls):
    """The roll-up upserts adding up `calls`, as (statements, params, sums): each roll-up row they touch is
    added to once; the sums are sql_number literals for the statements' `{}` slots, in order."""
    per_provider, per_owner = {}, {}
    params, sums = [], []
    for call in calls:
        hour = call.created_at.replace(minute=0, second=0, microsecond=0)
        usage, provider = _rollup_values(
            outcome=call.outcome, latency_ms=call.latency_ms, units=call.units, cost_usd=call.cost_usd
        )
        _sum_into(per_provider.setdefault((hour, call.provider), {}), provider)
        _sum_into(per_owner.setdefault((hour, call.provider, call.owner_id), {}), usage)
    table = ProviderRollup._meta.db_table
    added = _nonzero_in_any(per_provider.values(), _PROVIDER_SUMS)
    statements = [upsert_sql(table, ["hour", "provider"], _PROVIDER_SUMS, "(hour, provider)", len(per_provider), added)]
    for (hour, provider), row in per_provider.items():
        params += [hour, provider]
        sums += [row[c] for c in _PROVIDER_SUMS]
    # An owner's rows and the no-owner rows conflict on different unique indexes: one upsert each.
    table = UsageRollup._meta.db_table
    for with_owner in (True, False):
        rows = [(key, amounts) for key, amounts in per_owner.items() if (key[2] is not None) == with_owner]
        if not rows:
            continue
        conflict = "(hour, provider, owner_id)" if with_owner else "(hour, provider) WHERE owner_id IS NULL"
        added = _nonzero_in_any((row for _, row in rows), _USAGE_SUMS)
        statements.append(upsert_sql(table, ["hour", "provider", "owner_id"], _USAGE_SUMS, conflict, len(rows), added))
        for key, row in rows:
            params += key
            sums += [row[c] for c in _USAGE_SUMS]
    return statements, params, sums


def _nonzero(amounts, columns):
    """The columns of `columns` that `amounts` adds something to (what an existing roll-up row must add)."""
    return tuple(c for c in columns if amounts[c])


def _nonzero_in_any(rows, columns):
    rows = list(rows)
    return tuple(c for c in columns if any(row.get(c) for row in rows))


def _sum_into(total, amounts):
    for column, amount in amounts.items():
        total[column] = total.get(column, 0) + amount


def _add(model, keys, amounts):
    """Add `amounts` to the row `keys`: one UPDATE, an INSERT only for the hour's first call."""
    rows = model.objects.filter(**keys)
    changes = {column: F(column) + amount for column, amount in amounts.items() if amount}
    if rows.update(**changes):
        return
    try:
        with transaction.atomic():
            model.objects.create(**keys, **amounts)
    except IntegrityError:
        rows.update(**changes)  # another process created the hour's row first


def rollup_record_call(call):
    """Add a saved ProviderCall to its hourly roll-ups (the ORM path)."""
    rollup_record(
        provider=call.provider,
        owner_id=call.owner_id,
        at=call.created_at,
        outcome=call.outcome,
        latency_ms=call.latency_ms,
        units=call.units,
        cost_usd=call.cost_usd,
    )


def rollup_record(*, provider, owner_id, at, outcome, latency_ms, units, cost_usd):
    """Add one call to its hourly roll-ups (the ORM path, for databases other than PostgreSQL)."""
    hour = at.replace(minute=0, second=0, microsecond=0)
    usage, per_provider = _rollup_values(outcome=outcome, latency_ms=latency_ms, units=units, cost_usd=cost_usd)
    _add(UsageRollup, {"hour": hour, "provider": provider, "owner_id": owner_id}, usage)
    _add(ProviderRollup, {"hour": hour, "provider": provider}, per_provider)


def month_start(now=None):
    now = now or timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# provider -> (loaded at, budgets). Kept in process memory, not the shared
# cache: it is read on every priced call, and a Redis round trip there costs
# more than the whole lookup. Saving a Budget clears this process's copy; other
# processes see the change within BUDGET_CACHE_SECONDS.
_budget_cache = {}
BUDGET_CACHE_SECONDS = 60


def _budgets(provider):
    loaded = _budget_cache.get(provider)
    now = time.monotonic()
    if loaded is None or now - loaded[0] > BUDGET_CACHE_SECONDS:
        budgets = list(Budget.objects.filter(provider=provider).values("owner_id", "monthly_limit_usd"))
        loaded = _budget_cache[provider] = (now, budgets)
    return loaded[1]


def budgets_forget(**kwargs):
    _budget_cache.clear()


def budget_checks(calls):
    """budget_check once per provider and owner that spent among `calls` (rows written in one batch, after its
    commit), at the latest such call's time."""
    spent = {}
    for call in calls:
        if call.cost_usd:
            spent[(call.provider, call.owner_id)] = call.created_at
    for (provider, owner_id), at in spent.items():
        budget_check(provider=provider, owner_id=owner_id, now=at)


def budget_check(*, provider, owner_id, now=None):
    """After a call that cost money: alert at 80 % and 100 % of the month's budget."""
    now = now or timezone.now()
    for budget in _budgets(provider):
        if budget["owner_id"] is not None and budget["owner_id"] != owner_id:
            continue
        rows = UsageRollup.objects.filter(provider=provider, hour__gte=month_start(now))
        if budget["owner_id"] is not None:
            rows = rows.filter(owner_id=budget["owner_id"])
        spent = rows.aggregate(s=Sum("cost_usd"))["s"] or Decimal(0)
        limit = Decimal(budget["monthly_limit_usd"])
        if limit <= 0:
            continue
        for pct in (100, 80):
            if spent >= limit * pct / 100:
                who = f"owner {budget['owner_id']}" if budget["owner_id"] else "all owners"
                alert_raise(
                    kind=Alert.Kind.BUDGET_THRESHOLD,
                    provider=provider,
                    severity=Alert.Severity.CRITICAL if pct == 100 else Alert.Severity.WARNING,
                    message=f"{provider} spend for {who} is ${spent:.2f} of ${limit:.2f} ({pct} % threshold) in {now:%Y-%m}.",
                    dedupe_key=f"budget:{provider}:{budget['owner_id']}:{now:%Y-%m}:{pct}",
                )
                break


def usage_for_owner(*, owner, now=None):
    """This month's calls, errors, each unit on its own, and cost for one owner, by provider (from the roll-up)."""
    start = month_start(now)
    rows = (
        UsageRollup.objects.filter(owner=owner, hour__gte=start)
        .values("provider")
        .annotate(
            calls=Sum("calls"),
            errors=Sum("errors"),
            cost_usd=Sum("cost_usd"),
            **{column: Sum(column) for column in UNIT_COLUMNS},
        )
        .order_by("provider")
    )
    providers = [
        {
            "provider": r["provider"],
            "calls": r["calls"],
            "errors": r["errors"],
            "cost_usd": r["cost_usd"],
            "units": {column: r[column] or 0 for column in UNIT_COLUMNS},
        }
        for r in rows
    ]
    total = sum((r["cost_usd"] for r in providers), Decimal(0))
    return {"month": f"{start:%Y-%m}", "since": start, "total_cost_usd": total, "providers": providers}


def latency_percentile(counts, pct):
    """The pct-th percentile in ms from ProviderRollup's latency counts; None when there are no calls.

    Interpolated within the bucket that holds it (geometrically, as the
    buckets are), so the figure is a latency, not a bucket's bound: at most a
    quarter octave (19 %) from the exact value, usually much closer. Past the
    last bound (~131 s) the answer is that bound.
    """
    total = sum(counts)
    if not total:
        return None
    threshold = total * pct / 100
    running = 0
    for i, count in enumerate(counts):
        if count and running + count >= threshold:
            if i >= len(LATENCY_BOUNDS_MS):
                return LATENCY_BOUNDS_MS[-1]
            share = (threshold - running) / count
            high = LATENCY_BOUNDS_MS[i]
            if i == 0:
                return high * share
            low = LATENCY_BOUNDS_MS[i - 1]
            return low * math.pow(high / low, share)
        running += count
    return LATENCY_BOUNDS_MS[-1]


LATENCY_COLUMNS = [f"l{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1)]
FAILURE_OUTCOMES = (ProviderCall.Outcome.ERROR, ProviderCall.Outcome.RATE_LIMITED, ProviderCall.Outcome.TIMEOUT)


def provider_totals(*, since, until=None, providers=None):
    """Per provider between two hours (ProviderRollup): calls, failures, rate, p50/p95 ms, cost, units."""
    rows = ProviderRollup.objects.filter(hour__gte=since)
    if until is not None:
        rows = rows.filter(hour__lt=until)
    if providers is not None:
        rows = rows.filter(provider__in=providers)
    sums = ["calls", *_OUTCOME_COLUMNS.values(), "cost_usd", "latency_ms_sum", *UNIT_COLUMNS, *LATENCY_COLUMNS]
    out = {}
    for r in rows.values("provider").annotate(**{f"s_{c}": Sum(c) for c in sums}).order_by("provider"):
        out[r["provider"]] = stats_from_sums({c: r[f"s_{c}"] or 0 for c in sums})
    return out


def stats_from_sums(sums):
    """Figures for display from summed ProviderRollup columns."""
    calls = sums["calls"]
    failures = sum(sums[o] for o in FAILURE_OUTCOMES)
    counts = [sums[c] for c in LATENCY_COLUMNS]
    return {
        "calls": calls,
        "failures": failures,
        "errors": failures,
        "circuit_open": sums[ProviderCall.Outcome.CIRCUIT_OPEN],
        "failure_rate": failures / calls if calls else None,
        "error_rate": failures / calls if calls else 0.0,
        "p50_ms": latency_percentile(counts, 50),
        "p95_ms": latency_percentile(counts, 95),
        "avg_latency_ms": sums["latency_ms_sum"] / calls if calls else None,
        "cost_usd": sums["cost_usd"] or Decimal(0),
        "units": {c: sums[c] for c in UNIT_COLUMNS},
        "latency_counts": counts,
    }


def dashboard_rows(*, hours=24, now=None):
    """Per provider for the last `hours` whole hours up to now (this hour included): see provider_totals."""
    now = now or timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=hours - 1)
    return [{"provider": name, **row} for name, row in provider_totals(since=since).items()]
