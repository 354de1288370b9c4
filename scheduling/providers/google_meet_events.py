"""Google Meet lifecycle events: Workspace Events API subscriptions, the Meet REST API reads they name, and
the Pub/Sub push token check. Speaks through google_meet's adapter (one SDK wrapper, one call log).

Subscriptions (https://developers.google.com/workspace/events/guides/create-subscription): a Meet space
is found by its meeting code (`spaces.get` on `spaces/{meetingCode}` answers the space's own name), then
`POST workspaceevents.googleapis.com/v1/subscriptions` with targetResource `//meet.googleapis.com/spaces/
{space}`, the event types and the Pub/Sub topic, on the user's token. Create, patch, reactivate and delete
answer a long-running Operation: done at once (its `response` is the Subscription), or to be read again
with `operations.get` until it is. A second create for the same space, events and topic is 409 ALREADY_EXISTS:
the hub then adopts the existing one from `subscriptions.list` (create has no idempotency key).

Push (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions): each delivery's OIDC token is
checked by integrations.webhooks.pubsub (shared with Gmail's watch).

GOOGLE_WORKSPACE_EVENTS_API_BASE points the subscriptions client at an emulator.
"""

from django.conf import settings

from integrations.errors import PermanentError

from .google_meet import PROVIDER, _execute, _service, meet, recording_file, transcript_file

EVENT_TYPES = (
    "google.workspace.meet.conference.v2.started",
    "google.workspace.meet.conference.v2.ended",
    "google.workspace.meet.participant.v2.joined",
    "google.workspace.meet.participant.v2.left",
    "google.workspace.meet.recording.v2.fileGenerated",
    "google.workspace.meet.transcript.v2.fileGenerated",
)
TARGET_PREFIX = "//meet.googleapis.com/"


class OperationPending(Exception):
    """The provider accepted the change but has not finished it: read the operation again later."""

    def __init__(self, name):
        super().__init__(f"Google operation {name} is still running")
        self.name = name


def events_api(conn):
    return _service(conn, "workspaceevents", "v1", settings.GOOGLE_WORKSPACE_EVENTS_API_BASE)


def _subscription_of(operation):
    """The Subscription a finished Operation carries; a failed one is a permanent error naming Google's reason."""
    if not operation.get("done"):
        raise OperationPending(operation.get("name", ""))
    error = operation.get("error")
    if error:
        raise PermanentError(
            PROVIDER, f"Google refused the subscription change: {error.get('message', error)}", code="operation_failed"
        )
    response = dict(operation.get("response") or {})
    response.pop("@type", None)
    return response


def space_for_code(*, conn, meeting_code):
    """The Meet space's resource name (`spaces/{id}`) behind a meeting code (`abc-mnop-xyz`)."""
    space = _execute(conn, "spaces.get", meet(conn).spaces().get(name=f"spaces/{meeting_code}"))
    return space["name"]


def subscription_create(*, conn, space, topic):
    """Subscribe to the space's lifecycle events; the Subscription (done) or OperationPending (poll it)."""
    body = {
        "targetResource": TARGET_PREFIX + space,
        "eventTypes": list(EVENT_TYPES),
        "notificationEndpoint": {"pubsubTopic": topic},
        # Meet events only name the resource; the hub reads it through the Meet REST API.
        "payloadOptions": {"includeResource": False},
    }
    try:
        operation = _execute(conn, "subscriptions.create", events_api(conn).subscriptions().create(body=body))
    except PermanentError as exc:
        if exc.http_status != 409:
            raise
        found = subscription_find(conn=conn, space=space)
        if found is None:
            raise
        return found
    return _subscription_of(operation)


def subscription_find(*, conn, space):
    """The user's existing subscription on this space (what a 409 on create refers to), or None."""
    query = f'event_types:"{EVENT_TYPES[0]}" AND target_resource="{TARGET_PREFIX + space}"'
    found = _execute(conn, "subscriptions.list", events_api(conn).subscriptions().list(filter=query))
    subscriptions = found.get("subscriptions") or []
    return subscriptions[0] if subscriptions else None


def operation_get(*, conn, name):
    return _subscription_of(_execute(conn, "operations.get", events_api(conn).operations().get(name=name)))


def subscription_renew(*, conn, name):
    """Extend it to the longest Google allows (`ttl: 0s`); None when it is gone (expired or deleted)."""
    request = events_api(conn).subscriptions().patch(name=name, updateMask="ttl", body={"ttl": "0s"})
    try:
        return _subscription_of(_execute(conn, "subscriptions.patch", request))
    except PermanentError as exc:
        if exc.http_status in (404, 410):
            return None
        raise


def subscription_get(*, conn, name):
    """The Subscription as Google holds it now (its state, suspensionReason, expireTime); None when it is gone."""
    try:
        return _execute(conn, "subscriptions.get", events_api(conn).subscriptions().get(name=name))
    except PermanentError as exc:
        if exc.http_status in (404, 410):
            return None
        raise


def subscription_reactivate(*, conn, name):
    """Resume a suspended subscription (https://developers.google.com/workspace/events/guides/reactivate-
    subscription): the Subscription, ACTIVE again with its original expiry. Google refuses while what suspended
    it lasts (a PermanentError) and ignores or refuses a subscription that is not suspended."""
    request = events_api(conn).subscriptions().reactivate(name=name, body={})
    return _subscription_of(_execute(conn, "subscriptions.reactivate", request))


def subscription_delete(*, conn, name):
    """Delete it at Google; gone already is done. True when Google had it."""
    try:
        _execute(conn, "subscriptions.delete", events_api(conn).subscriptions().delete(name=name))
    except PermanentError as exc:
        if exc.http_status in (404, 410):
            return False
        raise
    return True


# --- What the events name (Meet REST API v2) --------------------------------------------------------


def conference_record_get(*, conn, name):
    return _execute(conn, "conferenceRecords.get", meet(conn).conferenceRecords().get(name=name))


def participant_session_get(*, conn, name):
    """The session (startTime, endTime) and its participant (who: signed-in, anonymous or phone user)."""
    api = meet(conn).conferenceRecords().participants()
    session = _execute(conn, "participantSessions.get", api.participantSessions().get(name=name))
    participant_name = name.rsplit("/participantSessions/", 1)[0]
    participant = _execute(conn, "participants.get", api.get(name=participant_name))
    return session, participant


def _pages(conn, operation, request_for, key):
    """Every item of a paged Meet list (nextPageToken), one ProviderCall per page."""
    items, token = [], None
    while True:
        page = _execute(conn, operation, request_for(token))
        items += page.get(key) or []
        token = page.get("nextPageToken")
        if not token:
            return items


def conferences_of(*, conn, space):
    """Every conference held in the space, each with its participants and their sessions (for a reconcile)."""
    records_api = meet(conn).conferenceRecords()
    records = _pages(
        conn,
        "conferenceRecords.list",
        lambda t: records_api.list(filter=f'space.name = "{space}"', pageToken=t),
        "conferenceRecords",
    )
    people = records_api.participants()
    sessions = people.participantSessions()
    for record in records:
        record["participants"] = _pages(
            conn, "participants.list", lambda t, r=record: people.list(parent=r["name"], pageToken=t), "participants"
        )
        for person in record["participants"]:
            person["sessions"] = _pages(
                conn,
                "participantSessions.list",
                lambda t, p=person: sessions.list(parent=p["name"], pageToken=t),
                "participantSessions",
            )
    return records


def recording_get(*, conn, name):
    """A RecordingFile when the file is generated in Drive, else None."""
    found = _execute(conn, "recordings.get", meet(conn).conferenceRecords().recordings().get(name=name))
    return recording_file(found)


def transcript_get(*, conn, name):
    found = _execute(conn, "transcripts.get", meet(conn).conferenceRecords().transcripts().get(name=name))
    return transcript_file(found)
