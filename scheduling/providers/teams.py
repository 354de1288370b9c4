"""Microsoft Teams meetings over Microsoft Graph with httpx: the only module that speaks Graph for meetings.

A Teams meeting is made as a calendar event with `isOnlineMeeting` and
`onlineMeetingProvider: teamsForBusiness` (`POST /me/events`), not a bare
`POST /me/onlineMeetings`: the event is what sends the attendees their
invitations, and cancelling it (`POST /me/events/{id}/cancel`) is what tells
them it is off. The Teams side of it (meeting id, passcode, dial-in, lobby,
auto-recording, recordings and transcripts) is the `onlineMeeting` found by its
join URL (`GET /me/onlineMeetings?$filter=JoinWebUrl eq '...'`), which Graph
documents for exactly this case.

Same client choice as mail (messaging/mail/providers/graph.py): plain httpx with
the connection's token (`integrations.oauth.bearer_auth`), one request = one
gateway attempt = one ProviderCall, no retries of its own; 429/503 Retry-After
is honoured by the gateway. A content link is only followed if it points at
GRAPH_API_BASE: it carries the user's token.
"""

import datetime as dt
import functools

import httpx

from integrations import gateway, oauth
from integrations.errors import DomainError, PermanentError, error_from_http
from integrations.providers import HttpxAdapter, graph_base

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
    return httpx.Client(headers={"Accept": "application/json", "User-Agent": "integration-hub"}, trust_env=False)


def _call(conn, operation, method, path, *, stream=False, **kwargs):
    # A token refresh, if due, is its own call (on microsoft_oauth), not part of this one.
    oauth.access_token(connection=conn)
    with TEAMS.attempt(operation, owner=conn.owner_id, scope=f"user:{conn.pk}") as att:
        request = _client().build_request(method, base() + path, timeout=gateway.timeout_for(PROVIDER), **kwargs)
        response = _client().send(
            request, auth=oauth.bearer_auth(connection=conn), stream=stream, follow_redirects=stream
        )
        att.record(
            http_status=response.status_code, request_id=response.headers.get("request-id"), units={"requests": 1}
        )
        if response.status_code >= 400:
            if stream:
                response.read()
                response.close()
            raise _error(response)
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


def meeting_create(*, conn, spec, notify=True):
    body = _event_body(spec)
    body.update({"isOnlineMeeting": True, "onlineMeetingProvider": "teamsForBusiness", "allowNewTimeProposals": False})
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
    patch = online_settings(spec.settings or {})
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


def recordings_list(*, conn, online_id, transcripts=True):
    """Recordings (and transcripts, where the grant allows) of the meeting's Teams onlineMeeting."""
    files = []
    page = _json(_call(conn, "recordings.list", "GET", f"/me/onlineMeetings/{online_id}/recordings"))
    for r in page.get("value") or []:
        files.append(
            RecordingFile(
                id=r["id"],
                file_type="MP4",
                recording_type="recording",
                size_bytes=0,
                download_url=r.get("recordingContentUrl")
                or f"{base()}/me/onlineMeetings/{online_id}/recordings/{r['id']}/content",
                recording_start=r.get("createdDateTime", ""),
                recording_end=r.get("endDateTime", ""),
            )
        )
    if transcripts:
        page = _json(_call(conn, "transcripts.list", "GET", f"/me/onlineMeetings/{online_id}/transcripts"))
        for t in page.get("value") or []:
            files.append(
                RecordingFile(
                    id=t["id"],
                    file_type="VTT",
                    recording_type="transcript",
                    size_bytes=0,
                    download_url=(
                        t.get("transcriptContentUrl")
                        or f"{base()}/me/onlineMeetings/{online_id}/transcripts/{t['id']}/content"
                    )
                    + "?$format=text/vtt",
                    recording_start=t.get("createdDateTime", ""),
                    recording_end=t.get("endDateTime", ""),
                )
            )
    return files


def recording_stream(*, conn, download_url):
    """Open a recording's or transcript's content; the caller iterates and closes it."""
    return _call(conn, "recording.download", "GET", _content_url(download_url), stream=True)
