"""Erasure: deactivate at once, delete after the grace period, keep a report without personal data.

    erase_request  -> at once: account deactivated, sessions ended, API tokens deleted, OAuth grants
                      revoked at the provider (Google) or deleted (Microsoft), watches and subscriptions
                      stopped (oauth.on_disconnect hooks), queued SMS / calls / price watches cancelled.
    erasure_run    -> after PRIVACY_ERASE_GRACE_DAYS (or at once when staff expedite): webhook payloads
                      that name the user's provider ids redacted, then every holder's `erase` in order,
                      the account row last; the same ids and the user's address are then taken out of
                      alert texts. Rows kept for the law or for accounting go to a pseudonym.

Each holder's erase is idempotent and recorded as done in `Erasure.report` as soon as it finishes, so a
retry (a provider down, a worker killed) runs only what is left. Provider deletions that keep failing
end in status `failed` and a staff alert naming the app and the error.
"""

import datetime as dt
import logging
import random
import re
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.encoding import force_bytes

from integrations.alerts import alert_raise
from integrations.audit.services import audit_record
from integrations.errors import DomainError, PermanentError
from integrations.models import Alert, WebhookEvent
from integrations.states import transition
from integrations.task_base import enqueue_on_commit

from . import registry
from .models import ErasedReference, Erasure

logger = logging.getLogger(__name__)

RUNNABLE = (Erasure.Status.SCHEDULED, Erasure.Status.RETRYING)
# An erasure in these states has started deleting (or stopped part-way): nothing of the user may be stored anew.
ERASING = (Erasure.Status.RUNNING, Erasure.Status.RETRYING, Erasure.Status.FAILED)
# Shorter strings would match unrelated payloads; provider ids and emails are longer.
MIN_REF_LENGTH = 6
STALE_RUN = dt.timedelta(hours=1)


def erasure_under_way(*, user_id):
    """True once the user's erasure has started deleting. A scheduled one (the grace period) does not count: the
    user may still cancel it, and its run deletes what was stored by then.

    Work that stores something of a user after reading their rows (an export's zip, a recording copy) asks this
    once the object is stored: an erasure that started before then may already have passed the place where it
    would have found the object, so the work deletes it itself.
    """
    return Erasure.objects.filter(subject_id=user_id, status__in=ERASING).exists()


class EraseReport:
    """What holders write to: counts per model, provider outcomes, and the pseudonym for kept rows."""

    def __init__(self, erasure, pseudonym_user=None, section="apps"):
        self.erasure = erasure
        self.pseudonym_user = pseudonym_user
        self.data = erasure.report
        self.section = section
        self.app = None

    def _bucket(self):
        apps = self.data.setdefault(self.section, {})
        return apps.setdefault(self.app or "-", {})

    def count(self, label, n):
        counts = self._bucket().setdefault("counts", {})
        counts[label] = counts.get(label, 0) + int(n or 0)

    def provider(self, key, value):
        self.data.setdefault("providers", {})[key] = value

    def provider_count(self, key, outcome):
        counts = self.data.setdefault("providers", {}).setdefault(key, {})
        counts[outcome] = counts.get(outcome, 0) + 1


def _pseudonym():
    return f"erased-{secrets.token_hex(8)}"


def _save(erasure, **fields):
    fields.setdefault("report", erasure.report)
    Erasure.objects.filter(pk=erasure.pk).update(**fields)


# --- Request ----------------------------------------------------------------------------------


def erase_request(*, subject, requested_by, password=None, expedite=False, request=None):
    """Deactivate `subject` at once and schedule the deletion; a second request returns the open erasure.

    Returns (erasure, created). Users erase themselves with their password; staff may erase anyone and
    may expedite (no grace period).
    """
    own = requested_by.pk == subject.pk
    if not own and not requested_by.is_staff:
        raise DomainError(403, "forbidden", "Only staff may erase another user's account.")
    if expedite and not requested_by.is_staff:
        raise DomainError(403, "forbidden", "Only staff may skip the grace period.")
    if own:
        if not password:
            raise DomainError(400, "password_required", "Confirm the erasure with your password.")
        if not subject.check_password(password):
            audit_record(
                action="privacy.erase",
                actor=requested_by,
                target=("auth.user", subject.pk),
                outcome="denied",
                request=request,
                reason="password",
            )
            raise DomainError(403, "password_incorrect", "That password is not correct; nothing was erased.")
    now = timezone.now()
    scheduled_for = now if expedite else now + dt.timedelta(days=settings.PRIVACY_ERASE_GRACE_DAYS)
    created = False
    with transaction.atomic():
        erasure = Erasure.objects.select_for_update().filter(subject_id=subject.pk, status__in=Erasure.OPEN).first()
        if erasure is None:
            try:
                with transaction.atomic():
                    erasure = Erasure.objects.create(
                        subject_id=subject.pk,
                        pseudonym=_pseudonym(),
                        # Collected now: disconnecting (below) deletes connections and what hangs off them
                        # (mailboxes, calendars), whose provider ids name the user in webhook payloads.
                        pending_refs=_references(subject),
                        requested_by_staff=not own,
                        scheduled_for=scheduled_for,
                        next_attempt_at=scheduled_for,
                        report={
                            "requested": {"by": "staff" if not own else "self", "expedite": bool(expedite)},
                            # Every app, until the immediate part below has run: a process that dies before
                            # then leaves it to the sweep, not undone for the whole grace period.
                            "disconnect_pending": [h.app for h in registry.holders() if h.disconnect is not None],
                        },
                    )
                created = True
            except IntegrityError:  # a concurrent request created it first
                erasure = Erasure.objects.get(subject_id=subject.pk, status__in=Erasure.OPEN)
        elif expedite and erasure.status == Erasure.Status.SCHEDULED:
            Erasure.objects.filter(pk=erasure.pk).update(scheduled_for=now, next_attempt_at=now)
        get_user_model().objects.filter(pk=subject.pk).update(is_active=False)
        audit_record(
            action="privacy.erase",
            actor=requested_by,
            target=("auth.user", subject.pk),
            request=request,
            erasure=erasure.pk,
            expedite=bool(expedite),
            repeat=not created,
        )
    if created:
        erasure_disconnect(erasure_id=erasure.pk)
    if expedite:
        from .tasks import erasure_run as erasure_run_task

        enqueue_on_commit(erasure_run_task, erasure.pk)
    erasure.refresh_from_db()
    return erasure, created


def erasure_disconnect(*, erasure_id):
    """The immediate part: every holder's `disconnect` (tokens, grants, watches, queued work).

    Provider calls happen here, outside any transaction. One that fails is left for the sweep to try
    again (and the deletion run repeats it before deleting anything).
    """
    erasure = Erasure.objects.get(pk=erasure_id)
    user = get_user_model().objects.filter(pk=erasure.subject_id).first()
    if user is None:
        return erasure
    still_scheduled = Erasure.objects.filter(pk=erasure.pk, status=Erasure.Status.SCHEDULED)
    report = EraseReport(erasure, section="disconnect")
    pending = []
    for holder in registry.holders():
        if holder.disconnect is None:
            continue
        # Checked before each holder: the sweep retries disconnects of erasures it listed a while ago, and the
        # user may have cancelled since (and signed in again, with a new token a disconnect would delete). A
        # run that has started deletes everything itself.
        if not still_scheduled.exists():
            return erasure
        report.app = holder.app
        try:
            holder.disconnect(user, report)
        except Exception as exc:  # noqa: BLE001 - one provider down must not stop the others
            logger.warning("privacy disconnect of %s failed: %s", holder.app, exc)
            pending.append(holder.app)
            report._bucket()["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        else:
            report._bucket().pop("error", None)
    erasure.report["disconnect_pending"] = pending
    still_scheduled.update(report=erasure.report)  # not over what a cancel or a started run wrote meanwhile
    return erasure


# What the immediate part of an erasure took away, and a cancellation does not give back.
NOT_RESTORED = (
    "API tokens stay revoked (sign in again for a new one); provider connections stay revoked or deleted "
    "(connect them again); SMS and calls that were queued stay cancelled, and price watches stay stopped."
)


def erasure_cancel(*, subject, requested_by, request=None):
    """During the grace period: the erasure is cancelled and the account is active again.

    Nothing has been deleted yet, so nothing is lost but what the immediate part stopped (NOT_RESTORED):
    tokens and grants revoked at a provider cannot be un-revoked. Once the deletion run has started the
    erasure can no longer be cancelled (409): a conditional move from `scheduled` decides the race with
    the run. `requested_by` is the user (already re-authenticated with their password) or staff.
    """
    if requested_by.pk != subject.pk and not requested_by.is_staff:
        raise DomainError(403, "forbidden", "Only staff may cancel another user's erasure.")
    erasure = Erasure.objects.filter(subject_id=subject.pk, status__in=Erasure.OPEN).first()
    if erasure is None:
        raise DomainError(404, "no_pending_erasure", "This account has no erasure waiting to run.")
    with transaction.atomic():
        if not transition(Erasure, erasure.pk, Erasure.Status.CANCELLED, frm=Erasure.Status.SCHEDULED):
            raise DomainError(
                409,
                "erasure_under_way",
                "The deletion has already started; it can no longer be cancelled. Staff can read its report.",
                status=Erasure.objects.get(pk=erasure.pk).status,
            )
        erasure.report["cancelled"] = {"by": "self" if requested_by.pk == subject.pk else "staff"}
        _save(erasure, pending_refs=[], next_attempt_at=None, finished_at=timezone.now())
        get_user_model().objects.filter(pk=subject.pk).update(is_active=True)
        audit_record(
            action="privacy.erase.cancel",
            actor=requested_by,
            target=("auth.user", subject.pk),
            request=request,
            erasure=erasure.pk,
        )
    erasure.refresh_from_db()
    return erasure


# --- The deletion run ---------------------------------------------------------------------------


def _references(user):
    refs = {user.email} if user.email else set()
    for holder in registry.holders():
        if holder.references is not None:
            refs |= {str(r) for r in holder.references(user) if r}
    return sorted(r for r in refs if len(r) >= MIN_REF_LENGTH)


def webhooks_redact(*, refs, pseudonym, batch=50):
    """Replace the payload of every webhook event that names one of `refs`; the row stays for de-duplication."""
    redacted = 0
    texts = WebhookEvent.objects.annotate(_payload=Cast("payload", TextField()))
    for i in range(0, len(refs), batch):
        chunk = refs[i : i + batch]
        match = Q(object_key__in=chunk)
        for ref in chunk:
            match |= Q(_payload__contains=ref)
        pks = list(texts.filter(match).values_list("pk", flat=True))
        if pks:
            redacted += WebhookEvent.objects.filter(pk__in=pks).update(
                payload={"redacted": f"privacy erasure of {pseudonym}"}, headers={}, last_error=""
            )
    return redacted


ERASED = "[erased]"


def alerts_redact(*, refs, batch=50):
    """Take every one of `refs` out of alert texts (any case); the alerts stay for staff, with the rest of the text.

    Alerts quote what a provider answered (a task's "gave up" alert, a failed webhook's error), and providers
    quote what they were sent: a mail server's refusal names the recipient's address, so the price-drop or
    payment-failed email task's alert kept the user's address after the erasure.
    """
    redacted = 0
    for i in range(0, len(refs), batch):
        chunk = refs[i : i + batch]
        match = Q()
        for ref in chunk:
            match |= Q(message__icontains=ref)
        pattern = re.compile("|".join(re.escape(ref) for ref in chunk), re.IGNORECASE)
        for pk, message in Alert.objects.filter(match).values_list("pk", "message"):
            # Only if still this text: an open alert takes the text of each new occurrence.
            redacted += Alert.objects.filter(pk=pk, message=message).update(message=pattern.sub(ERASED, message))
    return redacted


# ProviderTask.on_failure's alert: "<task name>(<its arguments>) gave up after <n> attempt(s): <the error>".
_GAVE_UP = re.compile(r"^([\w.]+)\((\d+)[,)]")


def gave_up_alerts_redact(*, rows):
    """`rows`: {task name: ids of the erased user's rows that such a task takes as its first argument}.

    A task's "gave up" alert quotes its arguments and what the provider answered, which say things of the user that
    are not among their references: the number they texted (Twilio's refusal names it), why their card was declined
    (the payment notice's argument). The alert stays for staff (which task, which row); the rest goes.
    """
    redacted = 0
    alerts = Alert.objects.filter(kind=Alert.Kind.TASK_FAILED, dedupe_key__in=[f"task_failed:{n}" for n in rows])
    for pk, message in alerts.values_list("pk", "message"):
        named = _GAVE_UP.match(message)
        if named is None or named[1] not in rows or int(named[2]) not in rows[named[1]]:
            continue
        plain = f"{named[1]}({named[2]},) gave up; what the provider answered went with the erased user's data."
        if message == plain:
            continue  # redacted by an earlier pass (this one's start, or a run the erasure retried)
        # Only if still this message: the open alert of a task takes the text of its latest failure.
        redacted += Alert.objects.filter(pk=pk, message=message).update(message=plain)
    return redacted


def _ref_digest(value):
    # Keyed (SECRET_KEY), so the kept digests cannot be checked against guessed addresses by who reads them.
    return salted_hmac("privacy.erased-reference", value, algorithm="sha256").hexdigest()


def _ref_digester():
    """_ref_digest with its key derived once, for the thousands of strings of a drained batch's payloads."""
    keyed = salted_hmac("privacy.erased-reference", b"", algorithm="sha256")

    def digest(value):
        mac = keyed.copy()
        mac.update(force_bytes(value))
        return mac.hexdigest()

    return digest


def _remember_references(erasure):
    ErasedReference.objects.bulk_create(
        [ErasedReference(erasure=erasure, digest=_ref_digest(r)) for r in erasure.pending_refs],
        ignore_conflicts=True,
    )


# What separates an id or address from its neighbours inside a longer string (a Graph resource path, a URL).
_SEPARATORS = re.compile(r"[\s/,;:?&=<>()\[\]\"']+")
_MAX_CANDIDATES = 5000


def _candidates(value, out):
    """Every string in a payload, and its separated parts, long enough to be a reference."""
    if len(out) >= _MAX_CANDIDATES:
        return out
    if isinstance(value, dict):
        for v in value.values():
            _candidates(v, out)
    elif isinstance(value, list):
        for v in value:
            _candidates(v, out)
    elif isinstance(value, str) and len(value) >= MIN_REF_LENGTH:
        out.add(value)
        if len(value) <= 2000:
            out.update(part for part in _SEPARATORS.split(value) if len(part) >= MIN_REF_LENGTH)
    return out


def webhooks_redact_late(events):
    """Redact the payload of every drained event that names an erased user (a webhook batch finisher).

    The erasure redacts the payloads it finds when it runs; a delivery that comes later (a retry, or the
    provider's answer to the erasure's own cancel) is processed like any other, so kept rows stay current,
    then redacted here. Matched by the keyed digests the erasure kept (ErasedReference), never the values.
    """
    if not ErasedReference.objects.exists():
        return 0  # no erasure within PRIVACY_LATE_WEBHOOK_DAYS: no payload can name one (one query, no hashing)
    digest_of = _ref_digester()
    by_digest = {}
    for event in events:
        for value in _candidates({"k": event.object_key, "p": event.payload}, set()):
            by_digest.setdefault(digest_of(value), set()).add(event.pk)
    if not by_digest:
        return 0
    named = {}
    for digest, pseudonym in ErasedReference.objects.filter(digest__in=list(by_digest)).values_list(
        "digest", "erasure__pseudonym"
    ):
        for pk in by_digest[digest]:
            named[pk] = pseudonym
    for pk, pseudonym in named.items():
        WebhookEvent.objects.filter(pk=pk).update(
            payload={"redacted": f"privacy erasure of {pseudonym}"}, headers={}, last_error=""
        )
    return len(named)


def erased_references_purge(*, now=None):
    """Beat: forget the digests of erasures finished more than PRIVACY_LATE_WEBHOOK_DAYS ago."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.PRIVACY_LATE_WEBHOOK_DAYS)
    return ErasedReference.objects.filter(erasure__finished_at__lt=cutoff).delete()[0]


def _pseudonym_user(erasure):
    return _pseudonym_account(erasure.pseudonym)


def _pseudonym_account(name):
    user, _ = get_user_model().objects.get_or_create(username=name, defaults={"is_active": False, "password": "!"})
    return user


def erased_pseudonyms(*, user_ids):
    """{user id: id of the erasure's pseudonym account} for those of `user_ids` whose erasure has started deleting
    (or is done): what is written for them from now on belongs to the pseudonym (the call-log hand-off's drainer
    writes rows of the users' last jobs after the erasure re-pointed the call log, or after the account is gone).

    The pseudonym account is created here if the run that just started has not created it yet."""
    names = dict(
        Erasure.objects.filter(subject_id__in=user_ids, status__in=(*ERASING, Erasure.Status.DONE)).values_list(
            "subject_id", "pseudonym"
        )
    )
    return pseudonym_accounts(names)


def pseudonym_accounts(names):
    """{user id: id of the pseudonym account} for {user id: pseudonym} (erasures that have started), each account
    created here if the run that just started has not created it yet."""
    return {user_id: _pseudonym_account(name).pk for user_id, name in names.items()}


def _retry_delay(attempts):
    cap = settings.PRIVACY_ERASE_RETRY_MAX_SECONDS
    return random.uniform(0.5, 1.0) * min(cap, settings.PRIVACY_ERASE_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))


def erasure_run(*, erasure_id, now=None):
    """Delete what the user's erasure covers. Returns the erasure's new status (or None if not due)."""
    now = now or timezone.now()
    erasure = Erasure.objects.filter(pk=erasure_id).first()
    if erasure is None or erasure.status not in RUNNABLE or erasure.scheduled_for > now:
        return None
    if not transition(Erasure, erasure.pk, Erasure.Status.RUNNING, frm=erasure.status, started_at=now):
        return None  # another worker has it
    erasure.refresh_from_db()
    erasure.attempts += 1
    _save(erasure, attempts=erasure.attempts)
    user = get_user_model().objects.filter(pk=erasure.subject_id).first()
    done = erasure.report.setdefault("done", [])
    failures = {}
    if user is not None:
        report = EraseReport(erasure, pseudonym_user=_pseudonym_user(erasure))
        if "references" not in done:
            erasure.pending_refs = sorted(set(erasure.pending_refs or ()) | set(_references(user)))
            # Before the payloads are redacted: a delivery arriving from here on is redacted once processed.
            _remember_references(erasure)
            done.append("references")
            _save(erasure, pending_refs=erasure.pending_refs)
        if "webhooks" not in done:
            erasure.report["webhooks_redacted"] = webhooks_redact(
                refs=erasure.pending_refs, pseudonym=erasure.pseudonym
            )
            done.append("webhooks")
            _save(erasure)
        for holder in registry.holders():
            if holder.erase is None or holder.app in done:
                continue
            if holder.app == "auth" and failures:
                break  # the account row goes last, only once everything else is gone
            report.app = holder.app
            try:
                holder.erase(user, report)
            except Exception as exc:  # noqa: BLE001 - recorded, retried, alerted; the other apps go on
                logger.warning("privacy erase of %s failed: %s", holder.app, exc)
                failures[holder.app] = exc
                report._bucket()["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            else:
                report._bucket().pop("error", None)
                done.append(holder.app)
            _save(erasure)
        # After the holders, whose own redactions find an alert by the text they know (the lockout alert by the
        # address it names); on every run, not once: a task of the user's that gave up meanwhile alerted anew.
        erasure.report["alerts_redacted"] = erasure.report.get("alerts_redacted", 0) + alerts_redact(
            refs=erasure.pending_refs
        )
        _save(erasure)
    if failures:
        return _failed(erasure, failures)
    erasure.report["finished"] = True
    _save(erasure, pending_refs=[], last_error="", next_attempt_at=None, finished_at=timezone.now())
    transition(Erasure, erasure.pk, Erasure.Status.DONE, frm=Erasure.Status.RUNNING)
    audit_record(action="privacy.erase.done", target=("auth.user", erasure.subject_id), erasure=erasure.pk)
    return Erasure.Status.DONE


def _failed(erasure, failures):
    summary = "; ".join(f"{app}: {type(exc).__name__}: {str(exc)[:200]}" for app, exc in failures.items())
    permanent = any(isinstance(exc, PermanentError) for exc in failures.values())
    if permanent or erasure.attempts >= settings.PRIVACY_ERASE_MAX_ATTEMPTS:
        _save(erasure, last_error=summary[:2000], next_attempt_at=None)
        transition(Erasure, erasure.pk, Erasure.Status.FAILED, frm=Erasure.Status.RUNNING)
        alert_raise(
            kind=Alert.Kind.TASK_FAILED,
            severity=Alert.Severity.CRITICAL,
            message=(
                f"Erasure {erasure.pk} (user {erasure.subject_id}) could not delete everything after "
                f"{erasure.attempts} attempt(s): {summary}. Fix the cause, then run it again from admin."
            )[:1000],
            dedupe_key=f"privacy_erasure:{erasure.pk}",
        )
        return Erasure.Status.FAILED
    delay = _retry_delay(erasure.attempts)
    _save(erasure, last_error=summary[:2000], next_attempt_at=timezone.now() + dt.timedelta(seconds=delay))
    transition(Erasure, erasure.pk, Erasure.Status.RETRYING, frm=Erasure.Status.RUNNING)
    return Erasure.Status.RETRYING


def erasure_retry(*, erasure_id):
    """Staff, after fixing the cause of a failed erasure (or to expedite a scheduled one): run it now."""
    now = timezone.now()
    erasure = Erasure.objects.get(pk=erasure_id)
    if erasure.status not in (Erasure.Status.FAILED, *RUNNABLE):
        # Done or cancelled: nothing to run. Running: a worker has it (the sweep runs it again if that worker
        # died). Saying "queued" would tell staff something happened that did not.
        raise DomainError(
            409,
            "erasure_not_runnable",
            f"This erasure is {erasure.status}; only a scheduled, retrying or failed one can run now.",
        )
    if erasure.status == Erasure.Status.FAILED:
        transition(Erasure, erasure.pk, Erasure.Status.RUNNING, frm=Erasure.Status.FAILED)
        transition(Erasure, erasure.pk, Erasure.Status.RETRYING, frm=Erasure.Status.RUNNING, attempts=0)
    Erasure.objects.filter(pk=erasure.pk, status__in=RUNNABLE).update(scheduled_for=now, next_attempt_at=now)
    from .tasks import erasure_run as erasure_run_task

    enqueue_on_commit(erasure_run_task, erasure.pk)


def erasures_enqueue_due(*, now=None):
    """Beat: run erasures whose grace period or retry delay is over; retry disconnects that failed."""
    from .tasks import erasure_run as erasure_run_task

    now = now or timezone.now()
    for erasure in Erasure.objects.filter(status=Erasure.Status.SCHEDULED).only("pk", "report"):
        if erasure.report.get("disconnect_pending"):
            erasure_disconnect(erasure_id=erasure.pk)
    # A run whose worker died mid-way is still `running`: every step is idempotent, so run it again.
    for pk in Erasure.objects.filter(status=Erasure.Status.RUNNING, started_at__lt=now - STALE_RUN).values_list(
        "pk", flat=True
    ):
        transition(Erasure, pk, Erasure.Status.RETRYING, frm=Erasure.Status.RUNNING, next_attempt_at=now)
    due = list(
        Erasure.objects.filter(status__in=RUNNABLE, next_attempt_at__lte=now, scheduled_for__lte=now).values_list(
            "pk", flat=True
        )
    )
    for pk in due:
        enqueue_on_commit(erasure_run_task, pk)
    return len(due)
