"""Accounting rows of a user whose erasure may have started: written for the erasure's pseudonym, never slipped in
behind it (privacy.erasure; integrations.privacy and ai.privacy re-point such rows when the erasure runs).

Every writer of a row that names its owner for accounting (the call log and its hourly roll-ups, an AI answer's
request log, monthly usage and budget settlement) follows one protocol with the erasure, per owner:

- the writer holds the owner's lock shared in the transaction that writes the row, and reads whether the owner's
  erasure has started only once it holds it (`pseudonyms_now`, `guard_statements`);
- the erasure takes the same lock exclusively (`owner_lock`), in the transaction that re-points the owner's rows,
  once its status says it has started: a writer that read "not started" is committed by then and its row is
  re-pointed; every later writer finds the erasure and writes its row as the erasure leaves one (the pseudonym as
  owner, the texts that could quote the user cleared).

PostgreSQL: one advisory lock per owner, taken in one order (of the owners' lock names) by every writer, so a
writer holding several owners' shared locks never waits in a cycle with an erasure. SQLite: no lock; its
transactions here begin IMMEDIATE (settings), so writers already run one at a time, and the read and the write
are simply done in one transaction.

The hot paths (a provider call's row, an AI answer's booking, a batch of them) send the lock and the check as the
head of the query string that writes the rows (`guard_statements`), in the same round trip: the check fails the
whole string when an owner's erasure has started, nothing is written, and the caller writes the rows again the
slow way (`pseudonyms_now` in a transaction of its own), which happens only for the rows of a user being erased.
On PostgreSQL both are one call of a PL/pgSQL function (migration privacy 0003), whose read is planned once per
session and takes its snapshot once the locks are held.
"""

from django.db import connection
from django.db.models import Exists, F, OuterRef

# The handed-off call log's drainer took this lock first (gateway.handoff), under this name: kept, so drainers of a
# hub still running the previous release and erasures of this one exclude each other during a deploy.
LOCK_NAME = "calllog.owner:{}"


def _lock_statement(owner_ids, exclusive=False):
    """The owners' locks as (sql, params); one owner's with a scalar parameter (most writes: cheaper to bind)."""
    take = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    names = sorted(LOCK_NAME.format(owner_id) for owner_id in owner_ids)
    if len(names) == 1:
        return f"SELECT {take}(hashtextextended(%s, 0))", names
    return f"SELECT count({take}(hashtextextended(name, 0))) FROM unnest(%s::text[]) AS name", [names]


def owner_lock(*owner_ids, exclusive=False):
    """In the caller's transaction, until it ends: the lock of each owner's accounting rows (shared for a writer,
    exclusive for an erasure). PostgreSQL only; nothing to do elsewhere (see the module docstring)."""
    owner_ids = {owner_id for owner_id in owner_ids if owner_id is not None}
    if connection.vendor != "postgresql" or not owner_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(*_lock_statement(owner_ids, exclusive))


def pseudonyms_now(owner_ids):
    """In the caller's transaction: {owner id: the pseudonym account's id} for those of `owner_ids` whose erasure has
    started (or is done), their locks held shared until the transaction ends. On PostgreSQL one statement
    (privacy_owner_erasures, migration privacy 0003): the locks, then the read, whose snapshot is taken once the
    locks are held."""
    from privacy.erasure import pseudonym_accounts

    owner_ids = sorted({owner_id for owner_id in owner_ids if owner_id is not None})
    if not owner_ids:
        return {}
    if connection.vendor != "postgresql":
        from privacy.erasure import erased_pseudonyms

        return erased_pseudonyms(user_ids=owner_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT erased, pseudonym_name FROM privacy_owner_erasures({_placeholders(owner_ids)})", owner_ids
        )
        names = dict(cursor.fetchall())
    return pseudonym_accounts(names) if names else {}


def guard_statements(owner_ids):
    """[(sql, params)] to put first in a query string that writes rows of `owner_ids` as they are (aio.at_once:
    one transaction): their locks taken shared, then their erasures read, failing the whole string (nothing
    written) if one of them has started (privacy_owner_rows_guard, migration privacy 0003). Empty where there is no
    owner (or SQLite, where at_once is not used)."""
    owner_ids = sorted({owner_id for owner_id in owner_ids if owner_id is not None})
    if not owner_ids or connection.vendor != "postgresql":
        return []
    return [(f"SELECT privacy_owner_rows_guard({_placeholders(owner_ids)})", owner_ids)]


def _placeholders(owner_ids):
    # One scalar parameter per owner (VARIADIC): an array parameter cost ~20 us more to bind client-side.
    return ", ".join(["%s"] * len(owner_ids))


def owner_rows_handed_to(model, keys, sums, user, pseudonym):
    """In the erasure's transaction: the user's rows of `model` (unique per owner and `keys`: an hour, a month)
    re-pointed at the pseudonym. A row whose `keys` the pseudonym already has (a writer booked it for the
    pseudonym once the erasure had started, or an earlier run of this erasure re-pointed it) is added into the
    pseudonym's row (`sums`) instead. Returns how many of the user's rows were handed on."""
    mine = model.objects.filter(owner=user)
    theirs = model.objects.filter(owner=pseudonym, **{name: OuterRef(name) for name in keys})
    moved = mine.exclude(Exists(theirs)).update(owner=pseudonym)
    for row in mine.select_for_update():
        model.objects.filter(owner=pseudonym, **{name: getattr(row, name) for name in keys}).update(
            **{name: F(name) + getattr(row, name) for name in sums}
        )
        row.delete()
        moved += 1
    return moved
