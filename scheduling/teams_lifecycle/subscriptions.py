"""Teams meeting subscriptions at Graph: which kinds, made, renewed, let lapse and deleted (see the package)."""

import datetime as dt
import logging
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from integrations import locks
from integrations.errors import DomainError, PermanentError, ProviderError
from integrations.oauth import on_disconnect, on_reauthorize
from integrations.oauth.services import missing_scopes
from integrations.task_base import enqueue_on_commit
from integrations.webhooks.graph import (
    encryption_certificate,
    new_client_state,
    subscription_body,
    unrecorded_subscriptions_delete,
)

from ..calendars.times import parse_instant
from ..models import Meeting, MeetingSubscription
from ..providers import teams
from .call_events import call_events_for, call_events_missing

logger = logging.getLogger(__name__)

PROVIDER = Meeting.Provider.TEAMS
LOCK_SECONDS = 300  # a run lists, deletes and makes up to three subscriptions
LOCK_WAIT_SECONDS = 30  # then the task is retried


@dataclass(frozen=True)
class SubscriptionKind:
    kind: str  # MeetingSubscription.kind
    collection: str  # recordings / transcripts of the onlineMeeting; "" for call events
    scopes: tuple  # the delegated scopes Graph needs for the subscription and the GET
    change_type: str = "created"
    app_only: bool = False

    def resource(self, meeting):
        if self.app_only:
            # The join URL as the value of an OData function argument: URL-encoded once more (Graph's example).
            return f"communications/onlineMeetings(joinWebUrl='{quote(meeting.join_url, safe='')}')/meetingCallEvents"
        return f"communications/onlineMeetings/{meeting.external_uuid}/{self.collection}"


CALL_EVENTS = "graph_call_events"
KINDS = {
    k.kind: k
    for k in (
        SubscriptionKind("graph_recordings", "recordings", teams.RECORDING_SCOPES),
        SubscriptionKind("graph_transcripts", "transcripts", teams.TRANSCRIPT_SCOPES),
        SubscriptionKind(CALL_EVENTS, "", (), change_type="updated", app_only=True),
    )
}
ARTIFACT_KINDS = ("graph_recordings", "graph_transcripts")
REFUSED = "hub_refused_status"  # in a failed row's raw: the HTTP status of Graph's refusal
# Graph's refusals of a delegated subscription that the organizer's own grant can cure: the token no longer
# accepted (401), or consent withdrawn or the permission not granted for this account (403; also Graph's answer
# for a missing Teams licence: once one is assigned, the organizer's next consent, even of a connection still
# active, makes the kind; before that it is refused again and stays failed).
OWNER_CURABLE = frozenset({401, 403})


def notification_url():
    """Where Graph delivers (it accepts only HTTPS); None when the hub has no public HTTPS address."""
    if not settings.APP_URL.startswith("https://") or not settings.MICROSOFT_CLIENT_ID:
        return None
    return settings.APP_URL.rstrip("/") + reverse("teams-webhook")


def _usable(conn):
    return conn is not None and conn.status == "active"


def granted(conn, scopes):
    return _usable(conn) and not missing_scopes(conn, list(scopes))


def wanted_kinds(conn):
    """What this organizer's meetings may subscribe to: artifacts as their grant allows, call events when the
    hub holds the application permission for their tenant. Nothing is attempted without it."""
    return [k for k in KINDS.values() if (call_events_for(conn) if k.app_only else granted(conn, k.scopes))]


def _end_of(meeting):
    return meeting.ended_at or meeting.start_time + dt.timedelta(minutes=meeting.duration_minutes)


def listening(meeting, now=None):
    """Whether the meeting may still produce artifacts: not cancelled, and not long past its end."""
    if meeting.status == Meeting.Status.CANCELLED:
        return False
    after = dt.timedelta(hours=settings.TEAMS_LISTEN_AFTER_END_HOURS)
    return (now or timezone.now()) < _end_of(meeting) + after


def _meeting(meeting_id):
    return Meeting.objects.select_related("connection", "owner").filter(pk=meeting_id, provider=PROVIDER).first()


# --- The service side: what meeting_create / meeting_cancel / the beat call ---------------------------------


def meeting_created(meeting):
    """A Teams meeting was just made: subscribe to its artifacts (a task) when the hub can receive them."""
    from ..tasks import teams_subscribe_task

    if meeting.external_uuid and notification_url() and wanted_kinds(meeting.connection):
        enqueue_on_commit(teams_subscribe_task, meeting.pk)


def meeting_cancelled(meeting):
    from ..tasks import teams_unsubscribe_task

    if MeetingSubscription.objects.filter(meeting=meeting, status=MeetingSubscription.Status.ACTIVE).exists():
        enqueue_on_commit(teams_unsubscribe_task, meeting.pk)


def _store(meeting, kind, old, **values):
    """Save the subscription Graph just made; False when another run stored one first (ours is then surplus)."""
    if old is None:
        try:
            with transaction.atomic():
                MeetingSubscription.objects.create(meeting=meeting, kind=kind, provider=PROVIDER, **values)
            return True
        except IntegrityError:
            return False
    # Conditional on the id we read: a concurrent run that replaced it wins, and ours is deleted.
    moved = MeetingSubscription.objects.filter(pk=old.pk, external_id=old.external_id).update(
        updated_at=timezone.now(), **values
    )
    return bool(moved)


def _subscription_body(meeting, kind, url, client_state, expires_at):
    body = subscription_body(
        resource=kind.resource(meeting),
        notification_url=url,
        client_state=client_state,
        expires_at=expires_at.astimezone(dt.UTC),
        change_type=kind.change_type,
    )
    if kind.app_only:
        # Basic notifications of call events carry nothing but an id Graph offers no API for: only rich
        # (encrypted) ones say what happened, so Graph encrypts them to the hub's certificate.
        certificate, certificate_id = encryption_certificate(settings.TEAMS_CALL_EVENTS_CERTIFICATE)
        body.update(includeResourceData=True, encryptionCertificate=certificate, encryptionCertificateId=certificate_id)
    return body


def _delete_unrecorded_subscriptions(conn, resource, url, tenant):
    """Those on the same resource at our URL that no MeetingSubscription records (its external_id, as the webhook
    knows it, whatever the row's status), deleted; listed with the token that makes them (the app's own for call
    events: then the list spans the tenant, hence the resource)."""
    listed = teams.subscriptions_to(conn, url, resource=resource, tenant=tenant)
    recorded = MeetingSubscription.objects.filter(provider=PROVIDER, external_id__in=listed).values_list(
        "external_id", flat=True
    )
    # subscription_delete: gone already is done.
    unrecorded_subscriptions_delete(listed, recorded, lambda sid: teams.subscription_delete(conn, sid, tenant=tenant))


def _subscribe_one(meeting, conn, kind, url, now, *, retry):
    row = MeetingSubscription.objects.filter(meeting=meeting, kind=kind.kind).first()
    if row is not None and row.status == MeetingSubscription.Status.FAILED and kind.kind not in retry:
        # Graph refused it (a PermanentError: no Teams licence, no consent) and refuses it again until its cause is
        # put right, which the hub cannot see: staff retry it then (subscription_retry). Not tried again by a run
        # that came for another reason (a sibling's renewal, a lifecycle notification), so a refused kind waits
        # for staff whether or not its siblings are active, as a Google Meet subscription the hub gave up on does.
        return "failed"
    expires_at = now + dt.timedelta(minutes=settings.TEAMS_SUBSCRIPTION_MINUTES)
    tenant = settings.MICROSOFT_APP_TENANT_ID if kind.app_only else None
    if row is not None and row.external_id and row.status == MeetingSubscription.Status.ACTIVE:
        renewed = teams.subscription_renew(conn, row.external_id, expires_at=expires_at, tenant=tenant)
        if renewed is not None:
            MeetingSubscription.objects.filter(pk=row.pk).update(
                expires_at=parse_instant(renewed), last_error="", updated_at=timezone.now()
            )
            return "renewed"
    client_state = new_client_state()
    body = _subscription_body(meeting, kind, url, client_state, expires_at)
    resource = body["resource"]
    try:
        _delete_unrecorded_subscriptions(conn, resource, url, tenant)
        subscription_id, granted_until = teams.subscription_create(conn, body=body, tenant=tenant)
    except PermanentError as exc:
        # Graph refused (no Teams licence, no consent, a meeting it no longer has; the list needs what the create
        # needs): said on the row, not retried.
        values = {"status": MeetingSubscription.Status.FAILED, "last_error": str(exc)[:2000], "resource": resource}
        # Why Graph refused, for teams_subscriptions_reauthorized: one the owner's grant may cure is retried when
        # they authorize Microsoft again.
        values["raw"] = {**((row.raw or {}) if row is not None else {}), REFUSED: exc.http_status}
        if row is None:
            MeetingSubscription.objects.get_or_create(
                meeting=meeting, kind=kind.kind, defaults={"provider": PROVIDER, **values}
            )
        else:
            MeetingSubscription.objects.filter(pk=row.pk).update(updated_at=timezone.now(), **values)
        return "failed"
    with transaction.atomic():
        # Under the meeting's row lock: a cancel that ran while Graph was making it found no subscription to
        # delete, so what was just made is stored and unsubscribed as that cancel would have; a cancel still to
        # come waits for this lock and then finds it stored.
        status = Meeting.objects.select_for_update().filter(pk=meeting.pk).values_list("status", flat=True).get()
        stored = _store(
            meeting,
            kind.kind,
            row,
            external_id=subscription_id,
            resource=resource,
            status=MeetingSubscription.Status.ACTIVE,
            expires_at=parse_instant(granted_until),
            client_state=client_state,
            last_error="",
            raw={
                "resource": resource,
                "changeType": kind.change_type,
                "notificationUrl": url,
                "app_only": kind.app_only,
            },
        )
        if stored and status == Meeting.Status.CANCELLED:
            meeting_cancelled(meeting)
            return "cancelled"
    if not stored:
        teams.subscription_delete(conn, subscription_id, tenant=tenant)
        return "surplus"
    return "created"


def meeting_subscribe(*, meeting_id, now=None, retry=()):
    """Task body: make (or renew) the meeting's artifact subscriptions; a kind Graph refused only when named in
    `retry` (staff's subscription_retry). {kind: outcome}."""
    meeting = _meeting(meeting_id)
    url = notification_url()
    now = now or timezone.now()
    if meeting is None or not meeting.external_uuid or not url or not listening(meeting, now):
        return {}
    conn = meeting.connection
    kinds = wanted_kinds(conn)
    # A kind no longer wanted (a grant or the app permission withdrawn) lapses at Graph: stop renewing it.
    MeetingSubscription.objects.filter(
        meeting=meeting, status=MeetingSubscription.Status.ACTIVE, expires_at__lt=now
    ).exclude(kind__in=[k.kind for k in kinds]).update(status=MeetingSubscription.Status.ENDED, updated_at=now)
    done = {}
    # One run per meeting at a time: a run's cleanup (_delete_unrecorded_subscriptions) would delete what another
    # has just made and not yet stored. The one that waited reads the rows again and renews what the other made.
    with locks.held(
        "teams-subscribe",
        meeting.pk,
        seconds=LOCK_SECONDS,
        wait=LOCK_WAIT_SECONDS,
        provider=PROVIDER,
        busy="another run is subscribing this meeting",
        retry_after=LOCK_WAIT_SECONDS,
    ):
        for kind in kinds:
            done[kind.kind] = _subscribe_one(meeting, conn, kind, url, now, retry=retry)
            if done[kind.kind] == "cancelled":
                break  # cancelled while Graph made that one: the rest are not made at all
    return done


def meeting_unsubscribe(*, meeting_id):
    """Task body (and the disconnect hook): delete the meeting's subscriptions at Graph while the token works."""
    meeting = _meeting(meeting_id)
    if meeting is None:
        return 0
    rows = MeetingSubscription.objects.filter(meeting=meeting, status=MeetingSubscription.Status.ACTIVE)
    done = 0
    for row in rows:
        if row.external_id and KINDS.get(row.kind, KINDS[ARTIFACT_KINDS[0]]).app_only:
            if not call_events_missing():  # the app's own token works whatever became of the connection
                teams.subscription_delete(None, row.external_id, tenant=settings.MICROSOFT_APP_TENANT_ID)
        elif row.external_id and _usable(meeting.connection):
            teams.subscription_delete(meeting.connection, row.external_id)
        # Conditional on the id read, as _store is: a create that stored another meanwhile (and, the meeting
        # cancelled, queued its own unsubscribe) keeps its row active, for that unsubscribe to delete.
        done += MeetingSubscription.objects.filter(pk=row.pk, external_id=row.external_id).update(
            status=MeetingSubscription.Status.ENDED, updated_at=timezone.now()
        )
    return done


def subscriptions_renew_due(*, now=None):
    """Beat: renew what lapses within TEAMS_SUBSCRIPTION_RENEW_BEFORE_HOURS while its meeting may still produce
    artifacts; let the rest lapse (marked ended) and read the final attendance of those meetings; subscribe the
    meetings that could have a subscription now but hold none."""
    from ..tasks import teams_attendance_task, teams_subscribe_task

    now = now or timezone.now()
    horizon = now + dt.timedelta(hours=settings.TEAMS_SUBSCRIPTION_RENEW_BEFORE_HOURS)
    due = MeetingSubscription.objects.filter(
        provider=PROVIDER, status=MeetingSubscription.Status.ACTIVE, expires_at__lt=horizon
    ).select_related("meeting")
    renew, finished = set(), set()
    for sub in due:
        if listening(sub.meeting, now):
            renew.add(sub.meeting_id)
        else:
            MeetingSubscription.objects.filter(pk=sub.pk).update(
                status=MeetingSubscription.Status.ENDED, updated_at=now
            )
            if sub.meeting.status != Meeting.Status.CANCELLED:
                finished.add(sub.meeting_id)
    new = _unsubscribed(now) - renew
    for meeting_id in sorted(renew | new):
        enqueue_on_commit(teams_subscribe_task, meeting_id)
    for meeting_id in sorted(finished):
        enqueue_on_commit(teams_attendance_task, meeting_id)
    return {"renew": len(renew), "new": len(new), "ended": len(finished)}


def _unsubscribed(now):
    """Meetings that may still produce artifacts but hold no subscription of a kind they could have now (the
    grant, or the app permission, came after the meeting was made). A refused one (failed) is not retried here:
    Graph refuses it again until its cause is put right, and then staff retry it (subscription_retry)."""
    if not notification_url():
        return set()
    since = now - dt.timedelta(hours=settings.TEAMS_LISTEN_AFTER_END_HOURS, days=1)
    meetings = (
        Meeting.objects.filter(provider=PROVIDER, start_time__gte=since, connection__status="active")
        .exclude(status=Meeting.Status.CANCELLED)
        .exclude(external_uuid="")
        .select_related("connection")
        .prefetch_related("subscriptions")
    )
    found = set()
    for meeting in meetings:
        held = {sub.kind for sub in meeting.subscriptions.all()}
        if listening(meeting, now) and any(k.kind not in held for k in wanted_kinds(meeting.connection)):
            found.add(meeting.pk)
    return found


def subscription_retry(*, subscription):
    """Staff (admin): make again a subscription Graph refused (failed: no Teams licence, no consent), once what
    refused it is put right. Nothing else tries it again: the beat subscribes only a kind the meeting holds no row
    of, and a subscribe run for any other reason (the renewal of an active sibling, a lifecycle notification) leaves
    a failed kind alone. The meeting's subscribe task, told to retry this kind, makes it (and renews the kinds still
    active). Refused (409) when the task could not: the meeting can no longer produce artifacts, the hub has no
    HTTPS address, or the kind is not wanted any more (the grant, or the app permission, withdrawn). Returns
    "subscribing"."""
    from ..tasks import teams_subscribe_task

    if subscription.provider != PROVIDER or subscription.kind not in KINDS:
        raise DomainError(409, "not_retryable", "Only a Teams subscription can be retried here.")
    if subscription.status != MeetingSubscription.Status.FAILED:
        raise DomainError(
            409,
            "subscription_not_failed",
            f"Only a failed Teams subscription can be retried; this one is {subscription.status}.",
        )
    meeting = _meeting(subscription.meeting_id)
    if meeting is None or not meeting.external_uuid or not listening(meeting):
        raise DomainError(
            409,
            "meeting_not_listening",
            "Its meeting can produce no more recordings or transcripts: it was cancelled, or it ended more than "
            "TEAMS_LISTEN_AFTER_END_HOURS ago.",
        )
    if not notification_url():
        raise DomainError(
            409,
            "push_unreachable",
            "Graph delivers notifications to HTTPS URLs only; set APP_URL to one, and MICROSOFT_CLIENT_ID.",
        )
    if subscription.kind not in {k.kind for k in wanted_kinds(meeting.connection)}:
        raise DomainError(
            409,
            "not_granted",
            "The organizer's Microsoft connection is not active or no longer grants what this subscription needs "
            "(for call events: the hub's application permission); once it does, retry it.",
        )
    enqueue_on_commit(teams_subscribe_task, meeting.pk, retry=[subscription.kind])
    return "subscribing"


def subscriptions_close_for_owner(owner):
    """Erasure: delete at Graph every subscription still open for the owner's meetings (a failure raises, and
    the erasure is tried again). How many were closed."""
    ids = (
        MeetingSubscription.objects.filter(
            meeting__owner=owner, provider=PROVIDER, status=MeetingSubscription.Status.ACTIVE
        )
        .values_list("meeting_id", flat=True)
        .distinct()
    )
    return sum(meeting_unsubscribe(meeting_id=meeting_id) for meeting_id in list(ids))


@on_reauthorize
def teams_subscriptions_reauthorized(connection):
    """oauth.on_reauthorize: the organizer authorized Microsoft again (a broken connection reconnected, or a
    re-consent of an active one, whose tokens never stopped working: consent given again, a Teams licence
    assigned since), so a kind Graph refused for want of their grant, consent or licence is made again, as
    Google Meet's subscriptions the owner's grant suspended are reactivated. One subscribe run per meeting still listening,
    told to retry only those kinds (it renews the active ones as any run does); Graph refuses again if the cause
    was something else, and the row stays failed for staff. A refusal the owner cannot cure (the meeting gone,
    a bad request) and the app-only call events (the hub's own permission) still wait for staff."""
    from ..tasks import teams_subscribe_task

    delegated = [k.kind for k in KINDS.values() if not k.app_only]
    failed = MeetingSubscription.objects.filter(
        meeting__connection=connection,
        provider=PROVIDER,
        kind__in=delegated,
        status=MeetingSubscription.Status.FAILED,
    ).select_related("meeting")
    retry = {}
    now = timezone.now()
    for sub in failed.order_by("meeting_id", "kind"):
        if (sub.raw or {}).get(REFUSED) in OWNER_CURABLE and listening(sub.meeting, now):
            retry.setdefault(sub.meeting_id, []).append(sub.kind)
    for meeting_id, kinds in retry.items():
        enqueue_on_commit(teams_subscribe_task, meeting_id, retry=kinds)


@on_disconnect
def teams_unsubscribe_connection(connection):
    """oauth.on_disconnect (also run by erasure): delete this connection's meeting subscriptions at Graph."""
    ids = (
        MeetingSubscription.objects.filter(
            meeting__connection=connection, provider=PROVIDER, status=MeetingSubscription.Status.ACTIVE
        )
        .values_list("meeting_id", flat=True)
        .distinct()
    )
    for meeting_id in list(ids):
        try:
            meeting_unsubscribe(meeting_id=meeting_id)
        except ProviderError:
            # The connection is going either way; Graph drops a subscription whose token stops working.
            logger.warning("teams subscription delete failed", extra={"meeting": meeting_id}, exc_info=True)
