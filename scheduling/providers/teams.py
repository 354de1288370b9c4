"""Microsoft Teams meetings over Microsoft Graph with httpx: the only module that speaks Graph for meetings.

A Teams meeting is made as a calendar event with `isOnlineMeeting` and
`onlineMeetingProvider: teamsForBusiness` (`POST /me/events`), not a bare
`POST /me/onlineMeetings`: the event is what sends the attendees their
invitations, and cancelling it (`POST /me/events/{id}/cancel`) is what tells
them it is off. The Teams side of it (meeting id, passcode, dial-in, lobby,
auto-recording, recordings and transcripts) is the `onlineMeeting` found by its
join URL (`GET /me/onlineMeetings?$filter=JoinWebUrl eq '...'`), which Graph
documents for exactly this case.

Same client choice as mail (messaging/mail/providers/graph/): plain httpx with
the connection's token (`integrations.oauth.bearer_auth`), one request = one
gateway attempt = one ProviderCall, no retries of its own; 429/503 Retry-After
is honoured by the gateway. A content link is only followed if it points at
GRAPH_API_BASE: it carries the user's token.
"""

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass
from urllib.parse import quote

import httpx
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from integrations import egress, gateway, oauth
from integrations.errors import DomainError, PermanentError, error_from_http
from integrations.fields import decrypt_str, encrypt_str
from integrations.oauth.config import by_registry_name
from integrations.providers import HttpxAdapter, graph_base
from integrations.webhooks.graph import subscriptions_to as graph_subscriptions_to

from ..calendars.create_id import create_id, graph_transaction_refused
from .common import ProviderMeeting, RecordingFile

PROVIDER = "teams"
# Graph reads delegated tokens' scopes without its URL prefix.
RECORDING_SCOPES = ("OnlineMeetingRecording.Read.All",)
TRANSCRIPT_SCOPES = ("OnlineMeetingTranscript.Read.All",)


class TeamsAdapter(HttpxAdapter):
    provider = PROVIDER
    vendor = "Microsoft Graph"


TEAMS = TeamsAdapter()


def base():
    return graph_base()


def _error(response):
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    return error_from_http(
        PROVIDER,
        response.status_code,
        headers=dict(response.headers),
        code=error.get("code"),
        message=error.get("message", ""),
        request_id=response.headers.get("request-id"),
    )


@functools.cache
def _client():
    return httpx.Client(
        headers={"Accept": "application/json", "User-Agent": "integration-hub"}, transport=egress.transport()
    )


def _call(conn, operation, method, path, *, stream=False, **kwargs):
    # A token refresh, if due, is its own call (on microsoft_oauth), not part of this one.
    oauth.access_token(connection=conn)
    with TEAMS.attempt(operation, owner=conn.owner_id, scope=f"user:{conn.pk}") as att:
        request = _client().build_request(method, base() + path, timeout=gateway.timeout_for(PROVIDER), **kwargs)
        response = _client().send(
            request, auth=oauth.bearer_auth(connection=conn), stream=stream, follow_redirects=stream
        )
        TEAMS.answered(att, response, error=_error, request_id=response.headers.get("request-id"), stream=stream)
    return response


def _json(response):
    return response.json() if response.content else {}


def _event_body(spec):
    body = {}
    if spec.topic is not None:
        body["subject"] = spec.topic
    if spec.agenda is not None:
        body["body"] = {"contentType": "text", "content": spec.agenda}
    if spec.start_time is not None:
        # Sent in UTC (an unambiguous instant); the meeting's own zone is shown to people by their clients.
        body["start"] = {"dateTime": _utc_naive(spec.start_time), "timeZone": "UTC"}
    if spec.end_time is not None:
        body["end"] = {"dateTime": _utc_naive(spec.end_time), "timeZone": "UTC"}
    if spec.participants:
        body["attendees"] = [
            {"emailAddress": {"address": p["email"], "name": p.get("name") or ""}, "type": "required"}
            for p in spec.participants
        ]
    return body


def _utc_naive(value):
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def online_settings(asked):
    """The onlineMeeting properties for the hub's settings (lobby = waiting room, recordAutomatically)."""
    patch = {}
    if asked.get("waiting_room") is not None:
        # Lobby on: everyone but the organizer waits to be admitted; off: everyone comes straight in.
        patch["lobbyBypassSettings"] = {
            "scope": "organizer" if asked["waiting_room"] else "everyone",
            "isDialInBypassEnabled": not asked["waiting_room"],
        }
    if asked.get("auto_recording") is not None:
        patch["recordAutomatically"] = asked["auto_recording"] == "cloud"
    return patch


def _online_meeting(conn, join_url):
    """The Teams onlineMeeting behind an event's join URL (None when Graph has none for it)."""
    escaped = join_url.replace("'", "''")
    page = _json(
        _call(conn, "onlineMeeting.find", "GET", "/me/onlineMeetings", params={"$filter": f"JoinWebUrl eq '{escaped}'"})
    )
    found = page.get("value") or []
    return found[0] if found else None


def _meeting(event, online):
    om = event.get("onlineMeeting") or {}
    join_url = (online or {}).get("joinWebUrl") or om.get("joinUrl") or ""
    audio = (online or {}).get("audioConferencing") or {}
    dial_in = []
    if audio.get("tollNumber") or om.get("tollNumber"):
        dial_in.append({"country": "", "number": audio.get("tollNumber") or om.get("tollNumber"), "type": "toll"})
    for number in audio.get("tollFreeNumbers") or om.get("tollFreeNumbers") or []:
        dial_in.append({"country": "", "number": number, "type": "toll_free"})
    ids = (online or {}).get("joinMeetingIdSettings") or {}
    return ProviderMeeting(
        id=event["id"],
        uuid=(online or {}).get("id", ""),
        join_url=join_url,
        passcode=ids.get("passcode") or "",
        dial_in=dial_in,
        raw={"event": event, "onlineMeeting": online or {}},
    )


def meeting_create(*, conn, spec, notify=True, idempotency_key=""):
    """POST the meeting's event, then find its Teams onlineMeeting and apply the settings there.

    With the client's Idempotency-Key the event carries a transactionId (calendars.create_id over the event and
    the settings), as calendar events on Graph do: a retry of a create whose answer was lost (or that failed
    after the event was made) is answered 201 with the event that attempt made, not a second meeting with a
    second set of invitations, and the lookup and settings below run on it again. Another meeting under a reused
    key gets another id; Graph's refusal of a used id is a conflict asking for a new key."""
    body = _event_body(spec)
    body.update({"isOnlineMeeting": True, "onlineMeetingProvider": "teamsForBusiness", "allowNewTimeProposals": False})
    patch = online_settings(spec.settings or {})
    if idempotency_key:
        # "/me/events": the user's default calendar, where POST /me/events puts it.
        body["transactionId"] = create_id(conn, "/me/events", idempotency_key, {"event": body, "settings": patch})
    with graph_transaction_refused(idempotency_key, noun="meeting", error="meeting_conflict"):
        event = _json(_call(conn, "event.create", "POST", "/me/events", json=body))
    join_url = (event.get("onlineMeeting") or {}).get("joinUrl")
    if not join_url:
        # Graph can return the event before its Teams meeting is attached: read it back once.
        event = _json(_call(conn, "event.get", "GET", f"/me/events/{event['id']}"))
        join_url = (event.get("onlineMeeting") or {}).get("joinUrl")
    if not join_url:
        raise PermanentError(
            PROVIDER, "Graph made the event without a Teams meeting (is Teams licensed for this user?)"
        )
    online = _online_meeting(conn, join_url)
    if online and patch:
        online = _json(_call(conn, "onlineMeeting.update", "PATCH", f"/me/onlineMeetings/{online['id']}", json=patch))
    return _meeting(event, online)


def meeting_update(*, conn, external_id, online_id, spec):
    body = _event_body(spec)
    if body:
        _call(conn, "event.update", "PATCH", f"/me/events/{external_id}", json=body)
    event = _json(_call(conn, "event.get", "GET", f"/me/events/{external_id}"))
    join_url = (event.get("onlineMeeting") or {}).get("joinUrl") or ""
    patch = online_settings(spec.settings or {})
    online = None
    if online_id and patch:
        online = _json(_call(conn, "onlineMeeting.update", "PATCH", f"/me/onlineMeetings/{online_id}", json=patch))
    elif join_url:
        online = _online_meeting(conn, join_url)
    return _meeting(event, online)


def meeting_cancel(*, conn, external_id, notify=True, comment=""):
    """`cancel` mails every attendee (organizer only); without `notify` the event is deleted. Gone already = done."""
    try:
        if notify:
            _call(conn, "event.cancel", "POST", f"/me/events/{external_id}/cancel", json={"comment": comment})
        else:
            _call(conn, "event.delete", "DELETE", f"/me/events/{external_id}")
    except PermanentError as exc:
        if exc.http_status == 404:
            return False
        raise
    return True


def _content_url(link):
    if not link.startswith(base() + "/"):
        raise DomainError(502, "provider_error", "Graph gave a content link outside Microsoft Graph; not followed.")
    return link[len(base()) :]


def _content_link(online_id, kind, item, field):
    """The item's content URL on the hub's Graph base (Graph may answer one relative to its root, or none)."""
    link = item.get(field) or ""
    if link.startswith(base() + "/"):
        return link
    return f"{base()}/me/onlineMeetings/{online_id}/{kind}/{item['id']}/content"


def _recording_file(online_id, r):
    return RecordingFile(
        id=r["id"],
        file_type="MP4",
        recording_type="recording",
        size_bytes=0,
        download_url=_content_link(online_id, "recordings", r, "recordingContentUrl"),
        recording_start=r.get("createdDateTime") or "",
        recording_end=r.get("endDateTime") or "",
    )


def _transcript_file(online_id, t):
    return RecordingFile(
        id=t["id"],
        file_type="VTT",
        recording_type="transcript",
        size_bytes=0,
        download_url=_content_link(online_id, "transcripts", t, "transcriptContentUrl") + "?$format=text/vtt",
        recording_start=t.get("createdDateTime") or "",
        recording_end=t.get("endDateTime") or "",
    )


def recordings_list(*, conn, online_id, transcripts=True):
    """Recordings (and transcripts, where the grant allows) of the meeting's Teams onlineMeeting."""
    page = _json(_call(conn, "recordings.list", "GET", f"/me/onlineMeetings/{online_id}/recordings"))
    files = [_recording_file(online_id, r) for r in page.get("value") or []]
    if transcripts:
        page = _json(_call(conn, "transcripts.list", "GET", f"/me/onlineMeetings/{online_id}/transcripts"))
        files += [_transcript_file(online_id, t) for t in page.get("value") or []]
    return files


def artifact_get(*, conn, online_id, kind, artifact_id):
    """One recording or transcript's metadata (what a change notification names), or None when it is gone."""
    path = f"/me/onlineMeetings/{online_id}/{kind}/{quote(artifact_id, safe='=')}"
    try:
        item = _json(_call(conn, f"{kind[:-1]}.get", "GET", path))
    except PermanentError as exc:
        if exc.http_status == 404:
            return None
        raise
    return _recording_file(online_id, item) if kind == "recordings" else _transcript_file(online_id, item)


@dataclass(frozen=True)
class AttendanceInterval:
    key: str
    email: str
    name: str
    joined_at: str
    left_at: str


@dataclass(frozen=True)
class AttendanceReport:
    id: str
    meeting_start: str
    meeting_end: str
    intervals: tuple


def _identity_key(record):
    identity = record.get("identity") or {}
    return identity.get("id") or record.get("emailAddress") or identity.get("displayName") or ""


def attendance_reports(*, conn, online_id):
    """The meeting's attendance reports (one per occurrence of the call), each with every join/leave interval.

    Graph builds a report once the call ends; a meeting never held has none. Records are read in line
    (`$expand=attendanceRecords`), following Graph's next links.
    """
    page = _json(_call(conn, "attendanceReports.list", "GET", f"/me/onlineMeetings/{online_id}/attendanceReports"))
    reports = []
    for summary in page.get("value") or []:
        path = f"/me/onlineMeetings/{online_id}/attendanceReports/{summary['id']}"
        report = _json(_call(conn, "attendanceReport.get", "GET", path, params={"$expand": "attendanceRecords"}))
        records = list(report.get("attendanceRecords") or [])
        link = report.get("attendanceRecords@odata.nextLink")
        while link:
            more = _json(_call(conn, "attendanceRecords.list", "GET", _content_url(link)))
            records += more.get("value") or []
            link = more.get("@odata.nextLink")
        intervals = []
        for record in records:
            key = _identity_key(record)
            name = (record.get("identity") or {}).get("displayName") or ""
            for interval in record.get("attendanceIntervals") or []:
                intervals.append(
                    AttendanceInterval(
                        key=key,
                        email=record.get("emailAddress") or "",
                        name=name,
                        joined_at=interval.get("joinDateTime") or "",
                        left_at=interval.get("leaveDateTime") or "",
                    )
                )
        reports.append(
            AttendanceReport(
                id=summary["id"],
                meeting_start=report.get("meetingStartDateTime") or summary.get("meetingStartDateTime") or "",
                meeting_end=report.get("meetingEndDateTime") or summary.get("meetingEndDateTime") or "",
                intervals=tuple(intervals),
            )
        )
    return reports


# --- Change-notification subscriptions (scheduling.teams_lifecycle) -----------------------------------------
# Per meeting, with the organizer's delegated token (recordings, transcripts), or with the hub app's own token
# in MICROSOFT_APP_TENANT_ID (meetingCallEvents: application permission only, on Graph's beta endpoint).


def beta_base():
    return base().rsplit("/", 1)[0] + "/beta"


def app_token(*, tenant):
    """The hub app's client-credentials token in `tenant`, kept (encrypted) in the cache until 5 minutes before
    it expires: the token request is one call on microsoft_oauth, not one per Graph request."""
    key = "teams:app-token:" + hashlib.sha256(f"{tenant}:{settings.MICROSOFT_CLIENT_ID}".encode()).hexdigest()[:32]
    cached = cache.get(key)
    if cached:
        return decrypt_str(cached)
    config = by_registry_name("microsoft_oauth")
    tokens = config.client().app_token(config, tenant=tenant)
    ttl = int((tokens.expires_at - timezone.now()).total_seconds()) - 300 if tokens.expires_at else 0
    if ttl > 0:
        cache.set(key, encrypt_str(tokens.access_token), ttl)
    return tokens.access_token


def _app_call(operation, method, path, *, tenant, **kwargs):
    token = app_token(tenant=tenant)
    with TEAMS.attempt(operation, scope=f"app:{tenant}") as att:
        request = _client().build_request(
            method,
            beta_base() + path,
            timeout=gateway.timeout_for(PROVIDER),
            headers={"Authorization": f"Bearer {token}"},
            **kwargs,
        )
        response = _client().send(request)
        att.record(
            http_status=response.status_code, request_id=response.headers.get("request-id"), units={"requests": 1}
        )
        if response.status_code >= 400:
            raise _error(response)
    return response


def _subscription_call(conn, tenant, operation, method, path, **kwargs):
    if tenant:
        return _app_call(operation, method, path, tenant=tenant, **kwargs)
    return _call(conn, operation, method, path, **kwargs)


def subscription_create(conn, *, body, tenant=None):
    """POST /subscriptions (the organizer's token, or the app's in `tenant`); (id, expiry Graph granted)."""
    answer = _json(_subscription_call(conn, tenant, "subscription.create", "POST", "/subscriptions", json=body))
    return answer["id"], answer.get("expirationDateTime") or body["expirationDateTime"]


def subscriptions_to(conn, notification_url, *, resource, tenant=None):
    """The ids of the subscriptions on `resource` that notify `notification_url` among those GET /subscriptions
    lists: with the organizer's token, what the app made for them; with the app's in `tenant`, what it made for
    itself or anyone there. Their clientState is not answered."""
    root = beta_base() if tenant else base()

    def page(link):
        if "://" in link:
            if not link.startswith(root + "/"):
                raise DomainError(502, "provider_error", "Graph gave a paging link outside Microsoft Graph.")
            link = link[len(root) :]
        return _json(_subscription_call(conn, tenant, "subscription.list", "GET", link))

    return graph_subscriptions_to(page, notification_url, resource=resource)


def subscription_renew(conn, subscription_id, *, expires_at, tenant=None):
    """The new expiry, or None when Graph no longer has the subscription (make a new one)."""
    try:
        answer = _json(
            _subscription_call(
                conn,
                tenant,
                "subscription.renew",
                "PATCH",
                f"/subscriptions/{subscription_id}",
                json={"expirationDateTime": expires_at.isoformat()},
            )
        )
    except PermanentError as exc:
        if exc.http_status == 404:
            return None
        raise
    return answer.get("expirationDateTime") or expires_at.isoformat()


def subscription_delete(conn, subscription_id, *, tenant=None):
    """Delete it at Graph; gone already is done."""
    try:
        _subscription_call(conn, tenant, "subscription.delete", "DELETE", f"/subscriptions/{subscription_id}")
    except PermanentError as exc:
        if exc.http_status != 404:
            raise


def recording_stream(*, conn, download_url):
    """Open a recording's or transcript's content; the caller iterates and closes it."""
    return _call(conn, "recording.download", "GET", _content_url(download_url), stream=True)
