"""What the shared machinery holds about a user (privacy registry): connections, API tokens, the call
log and its roll-ups, budgets, idempotency records, OAuth states, alerts a staff user handled."""

import copy
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .errors import PermanentError, RetryableError
from .models import (
    Alert,
    ApiToken,
    Budget,
    Connection,
    IdempotencyRecord,
    OAuthState,
    ProviderCall,
    UsageRollup,
)

logger = logging.getLogger(__name__)

CONNECTION_FIELDS = (
    "id",
    "provider",
    "account",
    "account_id",
    "capabilities",
    "requested_scopes",
    "scopes",
    "expires_at",
    "status",
    "status_detail",
    "last_used_at",
    "last_refreshed_at",
    "created_at",
    "updated_at",
)  # never access_token / refresh_token


def export_integrations(user, out):
    out.json(
        "integrations",
        {
            "connections": rows(Connection.objects.filter(owner=user), CONNECTION_FIELDS),
            "api_tokens": rows(
                ApiToken.objects.filter(user=user), ("id", "name", "prefix", "created_at", "expires_at", "last_used_at")
            ),
            "provider_calls": rows(ProviderCall.objects.filter(owner=user), exclude=("owner", "idempotency_key")),
            "usage_hourly": rows(UsageRollup.objects.filter(owner=user), exclude=("owner",)),
            "budgets": rows(Budget.objects.filter(owner=user), exclude=("owner",)),
            "idempotency_records": rows(
                IdempotencyRecord.objects.filter(owner=user), ("key", "status", "response_status", "created_at")
            ),
        },
        description=(
            "Connections to your accounts at providers (metadata only, never tokens), your API tokens (names and "
            "prefixes), the call log of every provider call made for you with its cost, hourly usage totals, budgets."
        ),
    )


def _delete_connection(conn, report):
    """Revoke at the provider (Google) and delete; an unconfigured provider or a refusal still deletes our copy."""
    from .errors import ProviderNotConfigured
    from .oauth.services import connection_delete

    try:
        result = connection_delete(owner=conn.owner, connection_id=conn.pk)
        report.provider(f"{conn.provider}.revoke", "revoked" if result["revoked"] else "deleted_locally")
    except RetryableError:
        raise  # provider down or limited: the erasure retries; the tokens stay until the revoke has been tried
    except (ProviderNotConfigured, PermanentError) as exc:
        logger.warning("connection %s deleted without revoking: %s", conn.pk, exc)
        conn.delete()
        report.provider(f"{conn.provider}.revoke", f"deleted_locally ({type(exc).__name__})")


def revoke_access(user, report):
    """At once: API tokens, connections (revoked at the provider where it can be), OAuth flows in progress."""
    report.count("integrations.ApiToken", ApiToken.objects.filter(user=user).delete()[0])
    report.count("integrations.OAuthState", OAuthState.objects.filter(owner=user).delete()[0])
    failed = []
    for conn in Connection.objects.filter(owner=user).select_related("owner"):
        try:
            _delete_connection(conn, report)
        except RetryableError as exc:
            failed.append(exc)
    if failed:
        raise failed[0]


def _handed_off_rows_written():
    """The queue of handed-off call-log rows (gateway.handoff) written now, if this hub hands rows off (they are
    written for the pseudonym: calls_as_owned_now), and a dead drainer's batch swept back and
    written with them. A live drainer's batch is waited for in erase_integrations."""
    if not (settings.CALL_LOG_HANDOFF and settings.REDIS_URL):
        return
    from .gateway import handoff

    try:
        handoff.sweep_and_drain()
    except Exception:  # noqa: BLE001 - Redis or the database down: the erasure goes on; the beat sweep writes them
        logger.exception("erasure: writing handed-off call-log rows first failed")


def _pseudonymised(pseudonym_id):
    """What the erasure changes on a call-log row of the user: the owner (accounting keeps the row), and the error
    text, which can quote what the user sent (a phone number, a file name)."""
    return {"owner_id": pseudonym_id, "error_message": ""}


def calls_as_owned_now(calls):
    """`calls` (ProviderCall rows not yet written) as the caller's transaction writes them now: their owners' locks
    held shared (integrations.erasing), those of users whose erasure has started replaced by copies pseudonymised
    as the erasure pseudonymises the call log. For every writer of the call log: a row may be written after the
    erasure passed the call log (a failed attempt of the user's last job, a web batch, the hand-off's drainer,
    which writes a job's row moments, or while PostgreSQL is down hours, after the call)."""
    from .erasing import pseudonyms_now

    pseudonyms = pseudonyms_now(call.owner_id for call in calls)
    if not pseudonyms:
        return calls
    out = []
    for call in calls:
        if call.owner_id in pseudonyms:
            call = copy.copy(call)  # the caller's own is written as it was if this transaction rolls back
            for name, value in _pseudonymised(pseudonyms[call.owner_id]).items():
                setattr(call, name, value)
        out.append(call)
    return out


def _rollups_handed_to(user, pseudonym):
    """The user's hourly roll-ups handed to the pseudonym, added into an hour the pseudonym already has (a drainer
    wrote a row of the user's for it once the erasure had started, or an earlier run of this erasure)."""
    from .erasing import owner_rows_handed_to

    keys = ("hour", "provider")
    sums = [
        f.attname for f in UsageRollup._meta.concrete_fields if not f.primary_key and f.name not in (*keys, "owner")
    ]
    return owner_rows_handed_to(UsageRollup, keys, sums, user, pseudonym)


def erase_integrations(user, report):
    from .erasing import owner_lock
    from .gateway import handoff

    revoke_access(user, report)
    report.count("integrations.IdempotencyRecord", IdempotencyRecord.objects.filter(owner=user).delete()[0])
    report.count("integrations.Budget", Budget.objects.filter(owner=user).delete()[0])
    # The call log and its hourly roll-ups stay for accounting, handed to the pseudonym; error texts go. Rows the
    # user's last jobs handed off and no drainer has written yet are written first.
    _handed_off_rows_written()
    with transaction.atomic():
        # Every writer of the call log (a drainer's batch or a row it sets aside, a web batch, a row written at
        # once) holds the owner's lock, shared, and reads whether the user is being erased once it holds it.
        # Taken exclusively here, after this erasure started: a row that read "no" before is committed by then and
        # re-pointed below; any later one finds the erasure and is written for the pseudonym (integrations.erasing).
        owner_lock(user.pk, exclusive=True)
        report.count(
            "integrations.ProviderCall.pseudonymised",
            ProviderCall.objects.filter(owner=user).update(**_pseudonymised(report.pseudonym_user.pk)),
        )
        report.count("integrations.UsageRollup.pseudonymised", _rollups_handed_to(user, report.pseudonym_user))
        if settings.CALL_LOG_HANDOFF and settings.REDIS_URL:
            # Rows set aside (a row that failed alone) are not written by anyone until staff put them back.
            report.count(
                "integrations.ProviderCall.set_aside_pseudonymised",
                handoff.set_aside_rewritten(user.pk, _pseudonymised(report.pseudonym_user.pk)),
            )
    Alert.objects.filter(acknowledged_by=user).update(acknowledged_by=None)
    Alert.objects.filter(resolved_by=user).update(resolved_by=None)
    report.count("integrations.Alert.redacted", _redact_alerts(user))


def _redact_alerts(user):
    """Alerts that name the user in their text: the lockout alert (the last locked-out user name and its IP
    address) and the test alerts a staff member sent. The alerts stay for staff; the names go."""
    from .alerts import alert_test_key
    from .auth.throttle import LOCKOUT_ALERT_KEY, lockout_who

    named = Q()
    for name in {user.get_username(), user.email} - {""}:
        named |= Q(message__contains=f"{lockout_who(name)} from ")
    redacted = Alert.objects.filter(named, dedupe_key=LOCKOUT_ALERT_KEY).update(
        message="Login lockout: too many failed logins (last: an account since erased)."
    )
    redacted += Alert.objects.filter(dedupe_key=alert_test_key(user.pk)).update(
        message="Test alert sent from the admin by a staff member since erased."
    )
    return redacted


def references(user):
    """Accounts at providers appear in push payloads (Gmail's emailAddress)."""
    return [a for a in Connection.objects.filter(owner=user).values_list("account", flat=True) if a]


register(
    PrivacyHolder(
        app="integrations",
        models=(
            "integrations.Connection",
            "integrations.OAuthState",
            "integrations.ApiToken",
            "integrations.IdempotencyRecord",
            "integrations.Budget",
            "integrations.ProviderCall",
            "integrations.UsageRollup",
            "integrations.Alert",
            # Deliveries of an alert to a channel: tied to users only through the staff member who
            # acknowledged or resolved the alert (cleared at erasure); they hold nothing of theirs.
            "integrations.AlertDelivery",
        ),
        export=export_integrations,
        erase=erase_integrations,
        disconnect=revoke_access,
        references=references,
        keep={
            "integrations.ProviderCall": "accounting: the call log and its costs, owner replaced by a pseudonym",
            "integrations.UsageRollup": "accounting: hourly totals, owner replaced by a pseudonym",
        },
        description=(
            "OAuth connections (encrypted tokens), API tokens (digests only), the provider call log with costs, "
            "hourly usage, budgets, idempotency records (24 h)."
        ),
        retention="connections and tokens until removed; the call log per the retention policy, pseudonymised "
        "at erasure so totals still add up.",
        order=900,
    )
)
