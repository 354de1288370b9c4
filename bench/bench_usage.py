"""Usage at scale: the usage API and the admin pages over a call log of 1,000,000 rows.

The rows are made in PostgreSQL with one INSERT ... SELECT over
generate_series (spread over the last 60 days, 20 providers, 1000 owners, one
"heavy" owner with a tenth of all calls), and the hourly UsageRollup rows with
one INSERT ... SELECT aggregation, the same figures the gateway would have
kept. A re-run reuses them when they are all there and less than a day old.
Pages are requested in-process through Django's test Client (the full
middleware stack; no HTTP server in front).
"""

import datetime as dt
import time

from bench import common

TITLE = "Usage at scale"

ROWS = 1_000_000
OWNERS = 1000
DAYS = 60
HEAVY_SHARE = 0.10
OPERATION = "bench.usage"
ROUNDS = 3
PER_ROUND = 15
ROUND_BUDGET_S = 5.0  # per page and round: slow pages get fewer samples, the suite stays bounded
WARMUP = 3
TARGET_P95_MS = 100
CONSOLE_P95_MS = 150  # issue 15: overview, money page and each chart at 1,000,000 calls
STAFF = "bench_staff"


def _owner_ids(cur):
    cur.execute("SELECT array_agg(id ORDER BY username) FROM auth_user WHERE username LIKE %s", ["bench\\_owner\\_%"])
    return cur.fetchone()[0] or []


def _ensure_owners(cur):
    cur.execute(
        """
        INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
        SELECT '!', false, 'bench_owner_' || lpad(g::text, 4, '0'), '', '', '', false, true, now()
        FROM generate_series(1, %s) g
        ON CONFLICT (username) DO NOTHING
        """,
        [OWNERS],
    )


def _present(cur, owner_ids):
    cur.execute(
        "SELECT count(*), max(created_at) > now() - interval '1 day' FROM integrations_providercall WHERE operation = %s",
        [OPERATION],
    )
    calls, fresh = cur.fetchone()
    cur.execute("SELECT coalesce(sum(calls), 0) FROM integrations_usagerollup WHERE owner_id = ANY(%s)", [owner_ids])
    rolled = cur.fetchone()[0]
    cur.execute("SELECT coalesce(sum(calls), 0) FROM integrations_providerrollup")
    per_provider = cur.fetchone()[0]
    return calls == ROWS and rolled == ROWS and per_provider == ROWS and bool(fresh)


def _generate(cur, owner_ids):
    from integrations.models import LATENCY_BOUNDS_MS
    from integrations.registry import PROVIDERS
    from integrations.units import UNIT_COLUMNS

    # The bench database is the suites' own: start the call log and roll-up afresh.
    cur.execute("TRUNCATE integrations_providercall, integrations_usagerollup, integrations_providerrollup")
    cur.execute(
        """
        WITH s AS (
            SELECT g,
                   CASE WHEN random() < %(heavy)s THEN 1 ELSE 1 + floor(random() * %(owners)s)::int END AS oi,
                   1 + floor(random() * %(nproviders)s)::int AS pi,
                   random() < 0.05 AS failed,
                   -ln(1 - random()) * 120 AS latency,
                   now() - random() * %(days)s * interval '1 day' AS at
            FROM generate_series(1, %(rows)s) g
        )
        INSERT INTO integrations_providercall
            (provider, operation, owner_id, outcome, http_status, latency_ms, attempt, scope, provider_request_id,
             idempotency_key, units, cost_usd, error_code, error_message, retryable, related_type, related_id,
             request_id, created_at)
        SELECT (%(providers)s::text[])[pi], %(operation)s, (%(owner_ids)s::bigint[])[oi],
               CASE WHEN failed THEN 'error' ELSE 'ok' END, CASE WHEN failed THEN 503 ELSE 200 END,
               latency, 1, '', 'req_' || g, '', '{"requests": 1}'::jsonb,
               CASE WHEN failed THEN 0 ELSE 0.002 END, CASE WHEN failed THEN 'provider_unavailable' ELSE '' END,
               '', CASE WHEN failed THEN true END, '', '', '', at
        FROM s
        """,
        {
            "heavy": HEAVY_SHARE,
            "owners": len(owner_ids),
            "nproviders": len(PROVIDERS),
            "days": DAYS,
            "rows": ROWS,
            "providers": list(PROVIDERS),
            "operation": OPERATION,
            "owner_ids": owner_ids,
        },
    )
    # The roll-ups exactly as usage.call_record would have built them, call by call.
    # Only requests are reported here; every other unit's column is 0 (no database default).
    others = [c for c in UNIT_COLUMNS if c != "requests"]
    zeros = ", ".join("0" for _ in others)
    cur.execute(
        f"""
        INSERT INTO integrations_usagerollup
            (hour, provider, owner_id, calls, errors, requests, cost_usd, latency_ms_sum, {", ".join(others)})
        SELECT date_trunc('hour', created_at), provider, owner_id, count(*),
               count(*) FILTER (WHERE outcome <> 'ok'), sum((units ->> 'requests')::bigint),
               sum(cost_usd), sum(latency_ms), {zeros}
        FROM integrations_providercall
        WHERE operation = %s
        GROUP BY 1, 2, 3
        """,
        [OPERATION],
    )
    buckets, low = [], None
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        cond = f"latency_ms <= {bound!r}" if low is None else f"latency_ms > {low!r} AND latency_ms <= {bound!r}"
        buckets.append(f"count(*) FILTER (WHERE {cond})")
        low = bound
    buckets.append(f"count(*) FILTER (WHERE latency_ms > {low!r})")
    columns = ", ".join(f"l{i}" for i in range(len(buckets)))
    cur.execute(
        f"""
        INSERT INTO integrations_providerrollup
            (hour, provider, calls, ok, error, rate_limited, timeout, circuit_open, requests, cost_usd,
             latency_ms_sum, {", ".join(others)}, {columns})
        SELECT date_trunc('hour', created_at), provider, count(*), count(*) FILTER (WHERE outcome = 'ok'),
               count(*) FILTER (WHERE outcome = 'error'), 0, 0, 0, sum((units ->> 'requests')::bigint),
               sum(cost_usd), sum(latency_ms), {zeros}, {", ".join(buckets)}
        FROM integrations_providercall
        WHERE operation = %s
        GROUP BY 1, 2
        """,
        [OPERATION],
    )


def _prepare():
    """Owners, 1M calls and their roll-up (reused when present); returns (owner ids, seconds spent, reused)."""
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cur:
        _ensure_owners(cur)
        owner_ids = _owner_ids(cur)
        reused = _present(cur, owner_ids)
        if not reused:
            _generate(cur, owner_ids)
    if not reused:
        from integrations.admin_console import console_cache_reset

        console_cache_reset()  # the console's cached hours and days describe the old rows
        # What autovacuum would have done by now: statistics and the visibility map.
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE integrations_providercall")
            cur.execute("VACUUM ANALYZE integrations_usagerollup")
            cur.execute("VACUUM ANALYZE integrations_providerrollup")
    return owner_ids, time.monotonic() - started, reused


def _clients(heavy_owner_id):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from integrations.auth.tokens import token_create

    User = get_user_model()
    heavy = User.objects.get(pk=heavy_owner_id)
    _, token = token_create(user=heavy, name="bench")
    staff, created = User.objects.get_or_create(username=STAFF, defaults={"is_staff": True, "is_superuser": True})
    if not (staff.is_staff and staff.is_superuser):
        staff.is_staff = staff.is_superuser = True
        staff.save()
    _, staff_token = token_create(user=staff, name="bench")
    api = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Token {token}")
    staff_api = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Token {staff_token}")
    admin = Client(SERVER_NAME="127.0.0.1")
    admin.force_login(staff)
    return api, staff_api, admin


CHARTS = "/admin/integrations/providercall/charts/"
MONEY = "/admin/integrations/providercall/money/"


def _endpoints(api, staff_api, admin, week_ago, last_month):
    """(label, client, url, target p95 ms or None)."""
    console = [
        ("console overview (admin index), last 24 h", admin, "/admin/", CONSOLE_P95_MS),
        ("console overview (admin index), last 30 d", admin, "/admin/?window=30d", CONSOLE_P95_MS),
        ("console money page, this month", admin, MONEY, CONSOLE_P95_MS),
        (f"console money page, {last_month} (a whole month)", admin, f"{MONEY}?month={last_month}", CONSOLE_P95_MS),
        *(
            (f"chart {name}.svg, last {window}", admin, f"{CHARTS}{name}.svg?window={window}", CONSOLE_P95_MS)
            for name in ("calls", "latency", "cost")
            for window in ("24h", "30d")
        ),
    ]
    return [
        ("GET /api/v1/integrations/usage/ (heavy owner, token)", api, "/api/v1/integrations/usage/", TARGET_P95_MS),
        *console,
        ("admin ProviderCall changelist, unfiltered", admin, "/admin/integrations/providercall/", TARGET_P95_MS),
        (
            "admin ProviderCall changelist, ?provider=stripe",
            admin,
            "/admin/integrations/providercall/?provider=stripe",
            None,
        ),
        (
            "admin ProviderCall changelist, any failure, last 24 h",
            admin,
            "/admin/integrations/providercall/?outcome=failed&since=24h",
            None,
        ),
        (
            "admin ProviderCall changelist, last 7 days",
            admin,
            "/admin/integrations/providercall/?since=7d",
            None,
        ),
        (
            "admin ProviderCall changelist, date hierarchy (this month)",
            admin,
            f"/admin/integrations/providercall/?created_at__year={week_ago.year}&created_at__month={week_ago.month}",
            None,
        ),
        ("GET /api/v1/integrations/calls/ (heavy owner, first page)", api, "/api/v1/integrations/calls/", None),
        ("GET /api/v1/integrations/status/ (staff)", staff_api, "/api/v1/integrations/status/", None),
    ]


def _queries(client, url):
    """(number of SQL queries, the slowest one's ms and its start) for one request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    slowest = max(ctx.captured_queries, key=lambda q: float(q["time"]), default=None)
    if slowest is None:
        return 0, 0.0, ""
    sql = " ".join(slowest["sql"].split())
    return len(ctx.captured_queries), float(slowest["time"]) * 1000, sql[:110] + ("..." if len(sql) > 110 else "")


def _measure(endpoints, warmup=False):
    """ms per request for each page: ROUNDS rounds, pages interleaved, each round bounded by ROUND_BUDGET_S."""
    samples = {label: [] for label, *_ in endpoints}
    for _ in range(1 if warmup else ROUNDS):
        for label, client, url, _ in endpoints:
            budget_end = time.perf_counter() + ROUND_BUDGET_S
            for _ in range(WARMUP if warmup else PER_ROUND):
                started = time.perf_counter()
                resp = client.get(url)
                samples[label].append((time.perf_counter() - started) * 1000)
                if resp.status_code != 200:
                    raise RuntimeError(f"{label}: HTTP {resp.status_code}: {resp.content[:300]!r}")
                if time.perf_counter() > budget_end:
                    break
    return samples


def run():
    reason = common.setup()
    if reason:
        return reason
    from django.db import connection
    from django.utils import timezone

    owner_ids, prep_s, reused = _prepare()
    heavy = owner_ids[0]
    api, staff_api, admin = _clients(heavy)
    now = timezone.now()
    last_month = f"{(now.replace(day=1) - dt.timedelta(days=1)):%Y-%m}"
    endpoints = _endpoints(api, staff_api, admin, (now - dt.timedelta(days=7)).date(), last_month)
    _measure(endpoints, warmup=True)

    load = common.machine_load()
    samples = _measure(endpoints)
    queries = {label: _queries(client, url) for label, client, url, _ in endpoints}

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM integrations_usagerollup")
        rollups = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*), coalesce(sum(calls), 0) FROM integrations_usagerollup WHERE owner_id = %s "
            "AND hour >= date_trunc('month', now())",
            [heavy],
        )
        month_rows, month_calls = cur.fetchone()
        cur.execute(
            "SELECT count(*), coalesce(sum(calls), 0) FROM integrations_usagerollup WHERE hour >= now() - interval '24 hours'"
        )
        day_rows, day_calls = cur.fetchone()
        cur.execute("SELECT count(*) FROM integrations_providerrollup")
        provider_rows = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM integrations_providercall WHERE owner_id = %s", [heavy])
        heavy_calls = cur.fetchone()[0]
    where = common.where()

    rows, misses = [], []
    for label, *_rest in endpoints:
        target = _rest[-1]
        required = target is not None
        p50 = common.percentile(samples[label], 50)
        p95 = common.percentile(samples[label], 95)
        n, slow_ms, slow_sql = queries[label]
        mark = ""
        if required:
            ok = p95 < target
            mark = f" (target {target})" if ok else f" (target {target}, **missed**)"
            if not ok:
                misses.append(label)
        rows.append(
            [
                label + mark,
                f"{p50:.1f}",
                f"**{p95:.1f}**" if required else f"{p95:.1f}",
                len(samples[label]),
                n,
                f"{slow_ms:.1f}",
                f"`{slow_sql}`",
            ]
        )
    verdict = "met" if not misses else "**missed** for " + "; ".join(misses)
    lines = [
        f"{ROWS:,} ProviderCall rows over the last {DAYS} days, {len(owner_ids)} owners ({HEAVY_SHARE:.0%} of calls "
        f"from one heavy owner: {heavy_calls:,} calls), 20 providers, and {rollups:,} hourly UsageRollup rows "
        f"({'reused from an earlier run' if reused else 'generated'} in {prep_s:.0f} s). {where}.",
        f"The usage API sums {month_rows:,} roll-up rows ({month_calls:,} calls) for the heavy owner this month; "
        f"The console reads the hourly per-provider roll-up ({provider_rows:,} ProviderRollup rows in all; a 30-day "
        f"window is at most 720 per provider) plus, for the window's first partial hour, the call log; the money "
        f"page's top spenders sum the per-owner roll-up for the month ({day_rows:,} rows in the last 24 h, "
        f"{day_calls:,} calls).",
        "",
        f"In-process through Django's test Client, {ROUNDS} rounds x {PER_ROUND} requests per page, pages "
        f"interleaved, after {WARMUP} warm-up requests each; machine at start: {load}.",
        "",
        f"Targets (rows marked target): p95 < {TARGET_P95_MS} ms for the usage API and the unfiltered call "
        f"list; p95 < {CONSOLE_P95_MS} ms for the console's overview, money page and each chart: {verdict}.",
        "",
        common.table(
            ["page", "p50 (ms)", "p95 (ms)", "samples", "SQL queries", "slowest query (ms)", "slowest query"], rows
        ),
        "",
        "The changelist has no full-table scan: the provider filter's choices come from integrations.registry, "
        "the date hierarchy takes its periods from MIN/MAX (integrations.admin.CalendarQuerySet), and an "
        "unfiltered page counts with PostgreSQL's row estimate.",
        "",
        "The console caches closed hours and days (their totals never change; integrations.admin_console), so "
        "these figures are the steady state: the first view after an hour or a day closes sums that period once.",
    ]
    return "\n".join(lines)
