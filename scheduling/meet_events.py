"""Google Meet lifecycle events (issue 19 point 7): a Workspace Events subscription per Meet space, and what
its events do to the hub's meetings, attendance and recordings.

Google sends Meet events only to a subscription on the meeting's space, made with the organizer's token
(scope meetings.space.readonly, the connection's `meeting_records` capability) and delivered through the
hub's Pub/Sub topic (GOOGLE_MEET_EVENTS_TOPIC) to POST /webhooks/google-meet/. Without the topic, the push
settings or the grant, a Meet meeting simply has no lifecycle events and the providers endpoint says why.

    meeting_subscribe_later    a Meet meeting was created: queue its subscription (a task, outside the request)
    meet_subscription_ensure   task: find the space by its meeting code, create the subscription (an Operation:
                               read again until done; a 409 adopts the existing one), store it
    meet_subscription_renew    task: PATCH ttl=0s (Google's longest) while the meeting may still produce events
    meet_subscription_suspended  Google suspended it (lifecycle event, or the state a call answered): act on why
    meet_subscription_reactivate task: resume one Google suspended, once what suspended it is cured
    meet_subscription_close    task: DELETE it once the meeting is cancelled (also on disconnect and erasure,
                               while the tokens still work: `meet_subscriptions_disconnect`)
    meet_subscriptions_due     beat: renew what ends soon, close what a cancel left, subscribe what a lost
                               message left unsubscribed, mark lapsed ones ended, reconcile meetings that met
    meet_meeting_reconcile     task: read the space's conferences, sessions and recordings and apply them (what
                               a lost event message would have left out)
    meet_event_apply           task: read what an event names (Meet REST API) and apply it

Events carry only the name of the resource that changed, so the task reads the resource's current state and
applies it with scheduling.lifecycle: a conference moves the meeting with the event's own time (an `ended`
is never reopened by a late `started`), a participant session is one attendance stretch keyed by the
participant's resource name and its start time (duplicates and a `left` before its `joined` land on one row),
a generated recording or transcript is booked by services.recordings_upsert. Every step is idempotent.
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations import oauth
from integrations.errors import DomainError, PermanentError, ProviderError, RetryableError
from integrations.models import WebhookEvent
from integrations.oauth import on_disconnect, on_reauthorize
from integrations.task_base import enqueue_on_commit

from . import capabilities, lifecycle, services
from .models import Meeting, MeetingSubscription
from .providers import google_meet
from .providers import google_meet_events as events

logger = logging.getLogger(__name__)

PROVIDER = Meeting.Provider.GOOGLE_MEET
KIND = "meet_space"
GRANT = "meeting_records"
Status = MeetingSubscription.Status


def missing_settings():
    """The settings lifecycle events for Meet still need (empty when the hub can subscribe and receive)."""
    return capabilities.not_configured(PROVIDER).get("lifecycle_webhooks", [])


def _connection(meeting):
    """The meeting's connection when it still works and carries the Meet grant, else None."""
    if meeting.connection_id is None:
        return None
    try:
        # Only the Meet scope of the grant: events and records do not need its Drive scope (downloads do).
        return oauth.connection_for(
            owner=meeting.owner,
            connection_id=meeting.connection_id,
            capability=GRANT,
            need=google_meet.RECORDS_SCOPES,
        )
    except DomainError:
        return None


def _wanted(meeting, now=None):
    """Can this meeting still produce events? Until cancelled; while started; else until the grace after its end."""
    if meeting.provider != PROVIDER or meeting.status == Meeting.Status.CANCELLED:
        return False
    if meeting.status == Meeting.Status.STARTED:
        return True
    end = meeting.start_time + dt.timedelta(minutes=meeting.duration_minutes)
    if meeting.ended_at and meeting.ended_at > end:
        end = meeting.ended_at
    return (now or timezone.now()) < end + dt.timedelta(hours=settings.GOOGLE_MEET_EVENTS_AFTER_END_HOURS)


def _meeting_code(meeting):
    if meeting.external_uuid:
        return meeting.external_uuid
    # https://meet.google.com/abc-mnop-xyz: the code is the path.
    return meeting.join_url.rstrip("/").rsplit("/", 1)[-1] if meeting.join_url else ""


def meeting_subscribe_later(meeting):
    """A Meet meeting was just created: queue its subscription when the hub can receive its events. True if queued."""
    from .tasks import meet_subscribe

    if meeting.provider != PROVIDER or missing_settings() or _connection(meeting) is None:
        return False
    enqueue_on_commit(meet_subscribe, meeting.pk)
    return True


def _stamp(sub, found, **keep):
    """Store the Subscription Google answered (`keep`: the hub's own notes on it, kept in raw)."""
    if (sub.raw or {}).get("name") == found.get("name"):
        keep.setdefault("hub_reactivations", sub.raw.get("hub_reactivations", 0))  # counted per subscription
    suspended = found.get("state") == "SUSPENDED"
    sub.external_id = found.get("name", "")
    sub.expires_at = services.parse_time(found.get("expireTime"))
    sub.status = Status.FAILED if suspended else Status.ACTIVE
    sub.last_error, sub.raw = "", {**found, **keep}
    sub.save(update_fields=["external_id", "expires_at", "status", "last_error", "raw", "updated_at"])
    if suspended:
        meet_subscription_suspended(sub, found)  # reactivated, left to the owner or ended, by Google's reason


def _space_gone(sub):
    """Google suspended it because the meeting's space was deleted: no subscription on that space can work."""
    return (sub.raw or {}).get("suspensionReason") == SPACE_GONE


def _failed(sub, error):
    # raw is cleared too: a failed operation is not read again, a later attempt starts afresh.
    MeetingSubscription.objects.filter(pk=sub.pk).update(status=Status.FAILED, last_error=str(error)[:2000], raw={})


def meet_subscription_ensure(*, meeting_id):
    """Task body: the meeting's space subscription exists at Google and here. Returns what happened."""
    meeting = Meeting.objects.select_related("owner").filter(pk=meeting_id, provider=PROVIDER).first()
    if meeting is None or not _wanted(meeting) or missing_settings():
        return "skipped"
    conn = _connection(meeting)
    if conn is None:
        return "no_grant"
    sub, _ = MeetingSubscription.objects.get_or_create(meeting=meeting, kind=KIND, defaults={"provider": PROVIDER})
    if sub.status == Status.ACTIVE and sub.external_id and sub.expires_at and sub.expires_at > timezone.now():
        return "active"
    if _space_gone(sub):
        return "gone"
    try:
        if not sub.resource:
            code = _meeting_code(meeting)
            if not code:
                _failed(sub, "Google gave this meeting no meeting code; its space cannot be found.")
                return "failed"
            sub.resource = events.TARGET_PREFIX + events.space_for_code(conn=conn, meeting_code=code)
            sub.save(update_fields=["resource", "updated_at"])
        pending = (sub.raw or {}).get("operation")
        if pending:
            found = events.operation_get(conn=conn, name=pending)
        else:
            found = events.subscription_create(
                conn=conn,
                space=sub.resource.removeprefix(events.TARGET_PREFIX),
                topic=settings.GOOGLE_MEET_EVENTS_TOPIC,
            )
    except events.OperationPending as exc:
        # Google is still making it: keep the operation's name and read it again on the task's retry.
        MeetingSubscription.objects.filter(pk=sub.pk).update(raw={"operation": exc.name})
        raise RetryableError(PROVIDER, "the subscription is still being created", retry_after=5) from None
    except PermanentError as exc:
        _failed(sub, exc)
        return "failed"
    with transaction.atomic():
        # Under the meeting's row lock: a cancel that ran while Google was making it found nothing to delete
        # at Google, so what was just made is closed as that cancel would have; a cancel still to come waits
        # for this lock and then finds the subscription stored.
        cancelled = Meeting.objects.select_for_update().filter(pk=meeting.pk).values_list("status", flat=True).get()
        _stamp(sub, found)
        if cancelled == Meeting.Status.CANCELLED:
            meeting_unsubscribe_later(meeting)
            return "cancelled"
    return "created"


def meet_subscription_renew(*, subscription_id):
    """Task body: extend an active subscription to Google's longest lifetime; re-create one Google let go."""
    sub = MeetingSubscription.objects.select_related("meeting__owner").filter(pk=subscription_id).first()
    if sub is None or sub.status != Status.ACTIVE or not sub.external_id or not _wanted(sub.meeting):
        return "skipped"
    conn = _connection(sub.meeting)
    if conn is None:
        _failed(sub, "The meeting's Google connection no longer has the meeting_records grant.")
        return "no_grant"
    try:
        found = events.subscription_renew(conn=conn, name=sub.external_id)
    except events.OperationPending:
        return "renewing"  # Google applies it shortly; the next sweep sees the new expiry (or patches again)
    if found is None:
        MeetingSubscription.objects.filter(pk=sub.pk).update(status=Status.ENDED, external_id="", raw={})
        return meet_subscription_ensure(meeting_id=sub.meeting_id)
    _stamp(sub, found)
    return "renewed"


# --- Suspension: Subscription.suspensionReason (the API's ErrorType) says who can cure it ---------------------
# https://developers.google.com/workspace/events/guides/reactivate-subscription

# Only the owner (or their Workspace administrator) can: the subscription stays failed, saying why and what to do;
# the owner's next authorization of Google reactivates it (meet_subscriptions_reauthorized).
NEEDS_OWNER = {
    "USER_SCOPE_REVOKED": "the owner withdrew the hub's access to Google Meet",
    "USER_AUTHORIZATION_FAILURE": "the owner's Google account no longer has access to this meeting's space",
    "APP_SCOPE_REVOKED": "the owner's Google Workspace administrator withdrew the hub's access to Google Meet",
    "APP_AUTHORIZATION_FAILURE": "the hub no longer has access to this meeting's space",
}
OWNER_TODO = "once that is put right, connect Google again (meeting_records grant) and the hub resumes it"
# The meeting's space was deleted: nothing more can happen in it, so the subscription ends and nobody is told.
SPACE_GONE = "RESOURCE_DELETED"
# Every other reason (ENDPOINT_PERMISSION_DENIED, ENDPOINT_NOT_FOUND, ENDPOINT_RESOURCE_EXHAUSTED, OTHER, none) is
# on the hub's side of the subscription: its Pub/Sub topic. The hub reactivates it (a task: retried with backoff
# while Google refuses, as far as the retry policy goes), and at most REACTIVATIONS times per subscription, so
# a topic that stays broken does not have the hub reactivate what Google suspends again for ever. What the hub
# gave up on waits for staff, who put the topic right and then retry it in admin (meet_subscription_retry): the
# way back of a failed recording copy too. A periodic retry would reactivate a topic still broken every time.
REACTIVATIONS = 3
HUB_TODO = (
    "the Pub/Sub topic GOOGLE_MEET_EVENTS_TOPIC must exist, grant meet-api-event-push@system.gserviceaccount.com "
    "the Pub/Sub Publisher role and have quota; then staff retry the subscription in admin"
)


def _reason(found):
    # The REST resource spells it suspensionReason; the lifecycle event in Google's guide, suspension_reason.
    return found.get("suspensionReason") or found.get("suspension_reason") or ""


def meet_subscription_suspended(sub, found):
    """Google suspended the subscription (its lifecycle event, or the state a call answered): act on why.

    Returns what the hub does: "ended" (the space is gone), "needs_owner", "reactivating" or "failed".
    """
    from .tasks import meet_subscription_reactivate_task

    if sub.status == Status.ENDED:
        return "ended"  # the hub let it go already (its meeting was cancelled, or it expired)
    reason = _reason(found)
    raw = {**(sub.raw or {}), **found, "state": "SUSPENDED", "suspensionReason": reason}
    raw.pop("suspension_reason", None)
    subs = MeetingSubscription.objects.filter(pk=sub.pk)
    said = f"Google suspended it ({reason or 'no reason given'})"
    if reason == SPACE_GONE:
        subs.update(status=Status.ENDED, last_error="", raw=raw)
        return "ended"
    if reason in NEEDS_OWNER:
        subs.update(status=Status.FAILED, last_error=f"{said}: {NEEDS_OWNER[reason]}; {OWNER_TODO}.", raw=raw)
        return "needs_owner"
    done = raw.get("hub_reactivations", 0)
    if done >= REACTIVATIONS:
        error = f"{said} again after the hub reactivated it {done} times, so it stays suspended: {HUB_TODO}."
        subs.update(status=Status.FAILED, last_error=error, raw=raw)
        return "failed"
    subs.update(status=Status.FAILED, last_error=f"{said}; the hub is reactivating it.", raw=raw)
    enqueue_on_commit(meet_subscription_reactivate_task, sub.pk)
    return "reactivating"


def _suspended_for(sub):
    """Why Google suspended this failed subscription, or None when it is not one Google suspended."""
    raw = sub.raw or {}
    if sub.status != Status.FAILED or not sub.external_id or raw.get("state") != "SUSPENDED":
        return None
    return raw.get("suspensionReason", "")


def meet_subscription_reactivate(*, subscription_id, owner_cured=False):
    """Task body: ask Google to resume a subscription it suspended, once what suspended it is cured.

    The hub's own reasons are tried at once; the owner's (`owner_cured`) once the owner authorized Google again.
    Google refuses while the cause lasts: a refusal is retried with the task's backoff, and the give-up
    (meet_subscription_reactivate_give_up) leaves it failed, naming the reason.
    """
    sub = MeetingSubscription.objects.select_related("meeting__owner").filter(pk=subscription_id).first()
    reason = _suspended_for(sub) if sub is not None else None
    if reason is None or reason == SPACE_GONE or (reason in NEEDS_OWNER and not owner_cured):
        return "skipped"
    if not _wanted(sub.meeting):
        MeetingSubscription.objects.filter(pk=sub.pk).update(status=Status.ENDED)
        return "ended"  # the meeting can no longer produce events: nothing to resume
    conn = _connection(sub.meeting)
    if conn is None:
        error = f"Google suspended it ({reason}) and the meeting's Google connection no longer has the {GRANT} grant."
        MeetingSubscription.objects.filter(pk=sub.pk).update(last_error=error)
        return "no_grant"
    done = (sub.raw or {}).get("hub_reactivations", 0)
    found = events.subscription_get(conn=conn, name=sub.external_id)
    if found is None:
        # Expired and deleted at Google meanwhile: the meeting subscribes anew.
        MeetingSubscription.objects.filter(pk=sub.pk).update(status=Status.ENDED, external_id="", raw={})
        return meet_subscription_ensure(meeting_id=sub.meeting_id)
    if found.get("state") == "SUSPENDED":
        try:
            found = events.subscription_reactivate(conn=conn, name=sub.external_id)
            done += 1
        except events.OperationPending:
            # Read again on the retry: subscriptions.get then says whether Google finished.
            raise RetryableError(PROVIDER, "Google is still reactivating the subscription", retry_after=5) from None
        except PermanentError as exc:
            if reason in NEEDS_OWNER:
                error = f"Google suspended it ({reason}) and would not reactivate it: {exc}. {OWNER_TODO}."
                MeetingSubscription.objects.filter(pk=sub.pk).update(last_error=error[:2000])
                return "refused"
            # "Fix the error before you reactivate": what suspended it lasts. Another attempt later, with backoff.
            raise RetryableError(
                PROVIDER, f"Google would not reactivate it: {exc}", code=exc.code, http_status=exc.http_status
            ) from exc
    if found.get("state") == "SUSPENDED":
        raise RetryableError(PROVIDER, "Google still holds the subscription suspended")
    _stamp(sub, found, hub_reactivations=done)
    return "reactivated"


def meet_subscription_reactivate_give_up(*, subscription_id, error):
    """The reactivation's last retry failed: the subscription stays failed, saying why and what to do."""
    sub = MeetingSubscription.objects.filter(pk=subscription_id).first()
    reason = _suspended_for(sub) if sub is not None else None
    if reason is None:
        return
    todo = OWNER_TODO if reason in NEEDS_OWNER else HUB_TODO
    error = f"Google suspended it ({reason or 'no reason given'}) and would not reactivate it ({error}): {todo}."
    MeetingSubscription.objects.filter(pk=sub.pk).update(last_error=error[:2000])


def meet_subscription_retry(*, subscription):
    """Staff (admin): try again a Meet subscription the hub gave up on, once what failed it is put right.

    One Google suspended is reactivated with a fresh budget of REACTIVATIONS (what spent the last one, a broken
    topic, is fixed now); Google refuses while the cause lasts, and it stays failed saying so. Any other failed one
    (a create Google refused) is subscribed again. Returns "reactivating" or "subscribing"."""
    from .tasks import meet_subscribe, meet_subscription_reactivate_task

    if subscription.provider != PROVIDER or subscription.kind != KIND:
        raise DomainError(
            409,
            "not_retryable",
            "Only a Google Meet subscription can be retried here.",
        )
    if subscription.status != Status.FAILED:
        raise DomainError(
            409,
            "subscription_not_failed",
            f"Only a failed Google Meet subscription can be retried; this one is {subscription.status}.",
        )
    if _suspended_for(subscription) is None:
        enqueue_on_commit(meet_subscribe, subscription.meeting_id)
        return "subscribing"
    raw = {**(subscription.raw or {}), "hub_reactivations": 0}
    # Conditional on what was read: a reactivation or a create that changed it meanwhile is left alone.
    if not MeetingSubscription.objects.filter(
        pk=subscription.pk, status=Status.FAILED, external_id=subscription.external_id
    ).update(
        raw=raw, last_error="Staff asked to reactivate it; the hub is reactivating it.", updated_at=timezone.now()
    ):
        raise DomainError(409, "subscription_changed", "The subscription changed meanwhile; read it again.")
    # owner_cured: staff retrying one the owner's access suspended vouch it is restored (Google refuses it if not).
    enqueue_on_commit(meet_subscription_reactivate_task, subscription.pk, owner_cured=True)
    return "reactivating"


@on_reauthorize
def meet_subscriptions_reauthorized(connection):
    """oauth.on_reauthorize: the owner authorized Google again (a broken connection reconnected, or a re-consent
    of an active one: a withdrawn scope granted again, access to the space given back), so what Google suspended
    for the owner's grant or access is reactivated (Google refuses it if the owner's account still lacks access:
    it stays failed)."""
    from .tasks import meet_subscription_reactivate_task

    failed = MeetingSubscription.objects.filter(
        meeting__connection=connection, provider=PROVIDER, kind=KIND, status=Status.FAILED
    )
    for sub in failed.exclude(external_id=""):
        if _suspended_for(sub) in NEEDS_OWNER:
            enqueue_on_commit(meet_subscription_reactivate_task, sub.pk, owner_cured=True)


def _end(sub):
    """Mark it ended if it still holds the subscription read (its name, or none): a create that stored another
    meanwhile queued its own close, which must find that one open. Whether it was marked."""
    return bool(MeetingSubscription.objects.filter(pk=sub.pk, external_id=sub.external_id).update(status=Status.ENDED))


def _delete_at_google(sub, conn):
    # The answer is an Operation; accepted is enough (Google finishes the deletion itself), gone is done.
    events.subscription_delete(conn=conn, name=sub.external_id)
    _end(sub)


def meet_subscription_close(*, subscription_id):
    """Task body: the meeting was cancelled, so its subscription goes (at Google too, while the grant works)."""
    sub = MeetingSubscription.objects.select_related("meeting__owner").filter(pk=subscription_id).first()
    if sub is None or sub.status == Status.ENDED:
        return "skipped"
    conn = _connection(sub.meeting)
    if not sub.external_id or conn is None:
        # Nothing at Google, or no token to reach it: the subscription lapses there by itself. Unless the create
        # stored its name since this read: then the close that create queued deletes it.
        return "ended" if _end(sub) else "skipped"
    _delete_at_google(sub, conn)
    return "deleted"


def meeting_unsubscribe_later(meeting):
    """A Meet meeting was cancelled: queue the deletion of its subscriptions."""
    from .tasks import meet_subscription_close_task

    for pk in (
        MeetingSubscription.objects.filter(meeting=meeting, provider=PROVIDER)
        .exclude(status=Status.ENDED)
        .values_list("pk", flat=True)
    ):
        enqueue_on_commit(meet_subscription_close_task, pk)


@on_disconnect
def meet_subscriptions_disconnect(connection):
    """oauth.on_disconnect (disconnect and erasure): delete the connection's subscriptions while its token works."""
    subs = MeetingSubscription.objects.filter(meeting__connection=connection, provider=PROVIDER, status=Status.ACTIVE)
    # Each row is ended only if it still holds what was read (_end), as the close does: ending every active row
    # also ended a subscription that a create (or a renewal's re-create) stored while the deletes were out, which
    # then stayed at Google, delivering the meeting's events until it lapsed. What is still active after one pass
    # was stored meanwhile: it is read again and deleted too while the token works. What a create stores after
    # this hook has run lapses at Google.
    for _ in range(2):
        for sub in subs.all():  # read afresh each pass
            _disconnect_one(sub, connection)


def _disconnect_one(sub, conn):
    """Delete it at Google when it has a name there (a failure is logged: it lapses there), and end its row."""
    if sub.external_id:
        try:
            _delete_at_google(sub, conn)
            return
        except ProviderError:
            logger.warning("meet subscription delete failed", extra={"subscription": sub.pk}, exc_info=True)
    _end(sub)


def meet_subscriptions_due(*, now=None):
    """Beat: queue renewals, closes and missing subscriptions; mark lapsed ones ended. How many were queued."""
    from .tasks import meet_reconcile, meet_subscribe, meet_subscription_close_task, meet_subscription_renew_task

    now = now or timezone.now()
    subs = MeetingSubscription.objects.filter(provider=PROVIDER, kind=KIND)
    subs.filter(status=Status.ACTIVE, expires_at__lt=now).update(status=Status.ENDED)
    queued = 0
    for pk in (
        subs.filter(meeting__status=Meeting.Status.CANCELLED).exclude(status=Status.ENDED).values_list("pk", flat=True)
    ):
        enqueue_on_commit(meet_subscription_close_task, pk)
        queued += 1
    horizon = now + dt.timedelta(hours=settings.GOOGLE_MEET_SUBSCRIPTION_RENEW_BEFORE_HOURS)
    due = subs.filter(status=Status.ACTIVE, expires_at__lt=horizon).exclude(external_id="").select_related("meeting")
    for sub in due:
        if _wanted(sub.meeting, now):
            enqueue_on_commit(meet_subscription_renew_task, sub.pk)
            queued += 1
    # What a lost event message would leave behind: read the spaces of meetings that may have met by now.
    held = subs.filter(status=Status.ACTIVE, meeting__start_time__lte=now).exclude(resource="")
    for sub in held.select_related("meeting"):
        if _wanted(sub.meeting, now):
            enqueue_on_commit(meet_reconcile, sub.meeting_id)
            queued += 1
    if missing_settings():
        return queued
    # A meeting whose subscribe message was lost (or whose expired subscription Google deleted) is subscribed here.
    earliest = now - dt.timedelta(hours=settings.GOOGLE_MEET_EVENTS_AFTER_END_HOURS, days=1)
    candidates = (
        Meeting.objects.filter(provider=PROVIDER, start_time__gte=earliest, connection__status="active")
        .exclude(status=Meeting.Status.CANCELLED)
        .exclude(subscriptions__kind=KIND, subscriptions__status__in=[Status.ACTIVE, Status.FAILED])
        .exclude(subscriptions__kind=KIND, subscriptions__raw__suspensionReason=SPACE_GONE)
        .select_related("connection")
    )
    for meeting in candidates:
        if _wanted(meeting, now) and GRANT in (meeting.connection.capabilities or []):
            enqueue_on_commit(meet_subscribe, meeting.pk)
            queued += 1
    return queued


# --- Events ------------------------------------------------------------------------------------------


def subscription_for(payload):
    """The hub's subscription an event came through (by the subscription's name, or the space it watches)."""
    attributes = payload.get("attributes") or {}
    name = (attributes.get("ce-source") or "").removeprefix("//workspaceevents.googleapis.com/")
    subject = attributes.get("ce-subject") or ""
    match = Q(external_id=name) if name.startswith("subscriptions/") else Q(pk__in=[])
    if subject.startswith(events.TARGET_PREFIX + "spaces/"):
        match |= Q(resource=subject)
    return (
        MeetingSubscription.objects.filter(match, provider=PROVIDER, kind=KIND)
        .select_related("meeting__owner")
        .order_by("-pk")
        .first()
    )


def _resource_name(data, key):
    value = (data.get(key) or {}).get("name")
    return value if isinstance(value, str) and value else None


def meet_event_apply(*, event_id):
    """Task body: apply one stored Meet event (read what it names, then update the meeting). Returns what it did."""
    event = WebhookEvent.objects.filter(pk=event_id, provider=PROVIDER).first()
    sub = subscription_for(event.payload) if event is not None else None
    if sub is None:
        return "unknown"
    meeting = sub.meeting
    conn = _connection(meeting)
    if conn is None:
        return "no_grant"
    try:
        return _apply(event, sub, meeting, conn)
    except PermanentError as exc:
        if exc.http_status in (404, 410):
            return "gone"  # the resource was deleted at Google since (a conference record expires): nothing to apply
        raise


def _apply(event, sub, meeting, conn):
    data = event.payload.get("data") or {}
    kind = event.type.removeprefix("google.workspace.meet.")
    if kind in ("conference.v2.started", "conference.v2.ended"):
        name = _resource_name(data, "conferenceRecord")
        record = events.conference_record_get(conn=conn, name=name) if name else None
        if record is None or events.TARGET_PREFIX + record.get("space", "") != sub.resource:
            return "ignored"
        moved = _conference_moved(meeting, record, started=kind == "conference.v2.started", at=event.occurred_at)
        return "moved" if moved else "stale"
    if kind in ("participant.v2.joined", "participant.v2.left"):
        name = _resource_name(data, "participantSession")
        if name is None:
            return "ignored"
        session, participant = events.participant_session_get(conn=conn, name=name)
        participant.setdefault("name", name.rsplit("/participantSessions/", 1)[0])
        return "attendance" if _session_booked(meeting, participant, session) is not None else "ignored"
    if kind in ("recording.v2.fileGenerated", "transcript.v2.fileGenerated"):
        recording = kind.startswith("recording")
        name = _resource_name(data, "recording" if recording else "transcript")
        if name is None:
            return "ignored"
        found = (events.recording_get if recording else events.transcript_get)(conn=conn, name=name)
        if found is None:
            return "ignored"
        services.recordings_upsert(meeting=meeting, files=[found])
        return "booked"
    return "ignored"


def _conference_moved(meeting, record, *, started, at):
    return lifecycle.meeting_moved(
        meeting=meeting,
        status=Meeting.Status.STARTED if started else Meeting.Status.ENDED,
        occurred_at=at,
        when=services.parse_time(record.get("startTime" if started else "endTime")),
    )


def _session_booked(meeting, participant, session):
    who = participant.get("signedinUser") or participant.get("anonymousUser") or participant.get("phoneUser") or {}
    return lifecycle.attendance_record(
        meeting=meeting,
        # The participant's resource name is stable across one person's sessions in a conference.
        key=participant["name"],
        name=who.get("displayName") or "",
        joined_at=services.parse_time(session.get("startTime")),
        # The session as Google holds it now: a `joined` read after the person left carries the end too.
        left_at=services.parse_time(session.get("endTime")),
    )


def meet_meeting_reconcile(*, meeting_id):
    """Task body: read every conference of the meeting's space and apply it, as its events would have.

    Events reach the worker as a task queued on commit; a task message lost on the way (a broker outage,
    a killed worker) would leave the meeting behind. The hourly beat therefore reads the space once per
    hour while the meeting can still produce events: conferences with their own start and end times as the
    event times (so nothing newer is ever undone), every participant session, every generated recording.
    """
    sub = (
        MeetingSubscription.objects.filter(meeting_id=meeting_id, provider=PROVIDER, kind=KIND)
        .exclude(resource="")
        .select_related("meeting__owner")
        .first()
    )
    if sub is None:
        return "skipped"
    meeting = sub.meeting
    conn = _connection(meeting)
    if conn is None:
        return "no_grant"
    records = events.conferences_of(conn=conn, space=sub.resource.removeprefix(events.TARGET_PREFIX))
    for record in sorted(records, key=lambda r: r.get("startTime", "")):
        for started, field in ((True, "startTime"), (False, "endTime")):
            at = services.parse_time(record.get(field))
            if at is not None:
                _conference_moved(meeting, record, started=started, at=at)
        for participant in record.get("participants") or []:
            for session in participant.get("sessions") or []:
                _session_booked(meeting, participant, session)
    files = google_meet.recordings_list(conn=conn, meeting_code=_meeting_code(meeting)) if records else []
    services.recordings_upsert(meeting=meeting, files=files)
    return "reconciled"
