"""Google Meet over google-api-python-client: the only module that speaks Calendar and Meet for meetings.

A Meet meeting is a Google Calendar event on the user's primary calendar with
`conferenceData.createRequest` (`conferenceSolutionKey.type = hangoutsMeet`,
inserted with `conferenceDataVersion=1`); the attendees are the participants,
and `sendUpdates=all` makes Google mail them the invitation, every change and
the cancellation. Google may answer with the conference still `pending`; the
event is then read back once, and a link Google has not given stays empty,
never invented.

Recordings and transcripts come from the Meet REST API v2 (`conferenceRecords`
found by the space's meeting code, then `.../recordings` and
`.../transcripts`): it needs `meetings.space.readonly`, which a connection has
only when the user granted the `meeting_records` capability; without it the
hub says so (403 missing_scope) instead of calling.

The files themselves are in the organizer's Google Drive: a recording is an MP4
(`driveDestination.file`, downloaded with Drive `files.get?alt=media`), a
transcript a Google Doc (`docsDestination.document`, exported as text/plain with
`files.export`). Both need `drive.meet.readonly` (only the Drive files Meet made),
also part of `meeting_records`; a connection granted before that scope was added
still lists recordings and receives events, and only a download names the scope
to grant. Drive is called over httpx, streamed (a recording can be gigabytes,
which googleapiclient would read whole into memory), with the connection's fresh
token, as one gateway attempt; GOOGLE_DRIVE_API_BASE points it at an emulator.

Services are built from the library's bundled discovery documents (no
discovery request) over google-auth-httplib2 with the connection's fresh token
(no refresh token inside: the library never refreshes behind the hub's lock).
GOOGLE_CALENDAR_API_BASE / GOOGLE_MEET_API_BASE point them at an emulator.
`execute(num_retries=0)`: the gateway and the task base are the one retry loop.
"""

import functools
import re
import uuid
from urllib.parse import quote

import google_auth_httplib2
import httplib2
import httpx
from django.conf import settings
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from integrations import egress, gateway, google_http, oauth
from integrations.errors import (
    GOOGLE_RATE_REASONS,
    PermanentError,
    ProviderTimeout,
    ProviderUnavailable,
    error_from_http,
    google_reason,
)
from integrations.providers import HttpxAdapter, ProviderAdapter

from ..calendars.create_id import create_id
from .common import ProviderMeeting, RecordingFile, utc_z

PROVIDER = "google_meet"
MEET_READONLY = "https://www.googleapis.com/auth/meetings.space.readonly"
DRIVE_MEET_READONLY = "https://www.googleapis.com/auth/drive.meet.readonly"
# What reading records needs, and what downloading their files needs: both are `meeting_records`, asked for
# separately so a connection granted before the Drive scope existed here keeps its listing and events.
RECORDS_SCOPES = (MEET_READONLY,)
DOWNLOAD_SCOPES = (DRIVE_MEET_READONLY,)


def translate_http_error(exc):
    status = int(exc.resp.status)
    reason, message = google_reason(exc.content)
    if status == 403 and reason in GOOGLE_RATE_REASONS:
        status = 429
    return error_from_http(PROVIDER, status, headers=dict(exc.resp), code=reason or None, message=message)


class GoogleMeetAdapter(ProviderAdapter):
    provider = PROVIDER
    sdk_errors = (HttpError, httplib2.HttpLib2Error, TimeoutError, OSError)

    def translate(self, exc):
        if isinstance(exc, HttpError):
            return translate_http_error(exc)
        if isinstance(exc, TimeoutError):
            return ProviderTimeout(PROVIDER, "Google did not answer in time")
        return ProviderUnavailable(PROVIDER, f"connection to Google failed ({type(exc).__name__})")


MEET = GoogleMeetAdapter()


def _http(conn):
    creds = oauth.google_credentials(connection=conn)
    # A write goes out once (google_http.OneSendHttp): httplib2 would resend an insert whose answer was lost.
    return google_auth_httplib2.AuthorizedHttp(creds, http=google_http.http(timeout=gateway.timeout_for(PROVIDER)))


def _service(conn, api, version, base):
    options = {"api_endpoint": base.rstrip("/") + "/"} if base else None
    return build(api, version, http=_http(conn), client_options=options, static_discovery=True, cache_discovery=False)


def calendar(conn):
    return _service(conn, "calendar", "v3", settings.GOOGLE_CALENDAR_API_BASE)


def meet(conn):
    return _service(conn, "meet", "v2", settings.GOOGLE_MEET_API_BASE)


def _execute(conn, operation, request):
    with MEET.attempt(operation, owner=conn.owner_id, scope=f"user:{conn.pk}") as att:
        result = request.execute(num_retries=0)
        att.record(http_status=200, units={"requests": 1})
    return result


def _event_body(spec):
    body = {}
    if spec.topic is not None:
        body["summary"] = spec.topic
    if spec.agenda is not None:
        body["description"] = spec.agenda
    if spec.start_time is not None:
        body["start"] = {"dateTime": utc_z(spec.start_time), "timeZone": spec.time_zone or "UTC"}
    if spec.end_time is not None:
        body["end"] = {"dateTime": utc_z(spec.end_time), "timeZone": spec.time_zone or "UTC"}
    if spec.participants:
        body["attendees"] = [
            {"email": p["email"], **({"displayName": p["name"]} if p.get("name") else {})} for p in spec.participants
        ]
    return body


def _meeting(event):
    conference = event.get("conferenceData") or {}
    video = next((e for e in conference.get("entryPoints") or [] if e.get("entryPointType") == "video"), {})
    dial_in = [
        {
            "country": e.get("regionCode", ""),
            "number": e.get("label") or e.get("uri", "").removeprefix("tel:"),
            "type": "toll",
            "pin": e.get("pin", ""),
        }
        for e in conference.get("entryPoints") or []
        if e.get("entryPointType") == "phone"
    ]
    return ProviderMeeting(
        id=event["id"],
        uuid=conference.get("conferenceId") or video.get("meetingCode") or "",
        join_url=video.get("uri") or event.get("hangoutLink") or "",
        passcode=video.get("passcode") or video.get("password") or "",
        dial_in=dial_in,
        raw=event,
    )


def _pending(event):
    status = (((event.get("conferenceData") or {}).get("createRequest") or {}).get("status") or {}).get("statusCode")
    return status == "pending"


def meeting_create(*, conn, spec, notify=True, idempotency_key=""):
    """Insert the meeting's event. With the client's Idempotency-Key the event id is chosen here (the same for a
    retry of the same create: calendars.create_id), so a retry after a lost answer gets 409 duplicate
    and reads the event the lost attempt made instead of making a second meeting; the caller refuses it if it
    was deleted since (its status is cancelled)."""
    body = _event_body(spec)
    if idempotency_key:
        body["id"] = create_id(conn, "primary", idempotency_key, body)
    body["conferenceData"] = {
        "createRequest": {"requestId": uuid.uuid4().hex, "conferenceSolutionKey": {"type": "hangoutsMeet"}}
    }
    events = calendar(conn).events()
    try:
        event = _execute(
            conn,
            "event.insert",
            events.insert(
                calendarId="primary", body=body, conferenceDataVersion=1, sendUpdates="all" if notify else "none"
            ),
        )
    except PermanentError as exc:
        if not (idempotency_key and exc.http_status == 409):
            raise
        event = _execute(conn, "event.get", calendar(conn).events().get(calendarId="primary", eventId=body["id"]))
    if _pending(event):
        event = _execute(conn, "event.get", calendar(conn).events().get(calendarId="primary", eventId=event["id"]))
    return _meeting(event)


def meeting_update(*, conn, external_id, spec, notify=True):
    body = _event_body(spec)
    events = calendar(conn).events()
    if body:
        event = _execute(
            conn,
            "event.patch",
            events.patch(
                calendarId="primary",
                eventId=external_id,
                body=body,
                conferenceDataVersion=1,
                sendUpdates="all" if notify else "none",
            ),
        )
    else:
        event = _execute(conn, "event.get", events.get(calendarId="primary", eventId=external_id))
    return _meeting(event)


def meeting_cancel(*, conn, external_id, notify=True):
    """Delete the event; `sendUpdates=all` mails the attendees the cancellation. Gone already (404/410) = done."""
    try:
        _execute(
            conn,
            "event.delete",
            calendar(conn)
            .events()
            .delete(calendarId="primary", eventId=external_id, sendUpdates="all" if notify else "none"),
        )
    except PermanentError as exc:
        if exc.http_status in (404, 410):
            return False
        raise
    return True


def _drive_id(value):
    # Google documents a bare file id ("1kuceFZ..."); a resource-style "files/<id>" is accepted as well.
    return (value or "").removeprefix("files/")


def recording_file(r):
    """A Meet recording as the hub's RecordingFile once its file is in Drive (None before: still processing).

    The download URL is Drive's media URL of the MP4 (the Drive file id kept on the row): what the hub streams.
    """
    file_id = _drive_id((r.get("driveDestination") or {}).get("file"))
    if r.get("state") != "FILE_GENERATED" or not file_id:
        return None
    return RecordingFile(
        id=r["name"],
        file_type="MP4",
        recording_type="recording",
        size_bytes=0,
        download_url=drive_media_url(file_id),
        recording_start=r.get("startTime", ""),
        recording_end=r.get("endTime", ""),
    )


def transcript_file(t):
    """A Meet transcript (a Google Doc) as a RecordingFile once generated, else None.

    A Doc has no bytes of its own to download: the hub exports it as plain text, hence TXT.
    """
    doc_id = _drive_id((t.get("docsDestination") or {}).get("document"))
    if t.get("state") != "FILE_GENERATED" or not doc_id:
        return None
    return RecordingFile(
        id=t["name"],
        file_type="TXT",
        recording_type="transcript",
        size_bytes=0,
        download_url=drive_export_url(doc_id),
        recording_start=t.get("startTime", ""),
        recording_end=t.get("endTime", ""),
    )


def recordings_list(*, conn, meeting_code):
    """Recordings and transcripts of every conference held in the meeting's space (Meet REST API v2)."""
    if not meeting_code:
        return []
    api = meet(conn)
    records = _execute(
        conn,
        "conferenceRecords.list",
        api.conferenceRecords().list(filter=f'space.meeting_code = "{meeting_code}"'),
    )
    files = []
    for record in records.get("conferenceRecords") or []:
        parent = record["name"]
        found = _execute(conn, "recordings.list", api.conferenceRecords().recordings().list(parent=parent))
        files += [f for f in map(recording_file, found.get("recordings") or []) if f is not None]
        found = _execute(conn, "transcripts.list", api.conferenceRecords().transcripts().list(parent=parent))
        files += [f for f in map(transcript_file, found.get("transcripts") or []) if f is not None]
    return files


# --- Drive: the recordings' and transcripts' files --------------------------------------------------------


class GoogleDriveAdapter(HttpxAdapter):
    provider = PROVIDER
    vendor = "Google Drive"


DRIVE = GoogleDriveAdapter()
TEXT_PLAIN = "text/plain"
# Google's answers when the token lacks the scope (legacy reason, ErrorInfo reason, WWW-Authenticate error).
SCOPE_REASONS = {"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficient_scope"}
# Rows booked before the hub downloaded Meet files carry the browser links Meet gives (exportUri).
_BROWSER_LINK = re.compile(r"^https://(drive|docs)\.google\.com/(?:file|document)/d/([\w-]+)")


def drive_base():
    return (settings.GOOGLE_DRIVE_API_BASE or "https://www.googleapis.com/drive/v3").rstrip("/")


def drive_media_url(file_id):
    return f"{drive_base()}/files/{quote(file_id, safe='')}?alt=media"


def drive_export_url(doc_id):
    return f"{drive_base()}/files/{quote(doc_id, safe='')}/export?mimeType={quote(TEXT_PLAIN, safe='')}"


@functools.cache
def _drive_client():
    return httpx.Client(headers={"User-Agent": "integration-hub"}, transport=egress.transport())


def _drive_url(download_url):
    """(URL, operation) of a booked Meet file. The token goes only to Drive's API, never to a URL from elsewhere."""
    if download_url.startswith(drive_base() + "/files/"):
        return download_url, "transcript.export" if "/export?" in download_url else "recording.download"
    found = _BROWSER_LINK.match(download_url)
    if found and found.group(1) == "drive":
        return drive_media_url(found.group(2)), "recording.download"
    if found:
        return drive_export_url(found.group(2)), "transcript.export"
    raise PermanentError(PROVIDER, "this recording's link is not a Google Drive file the hub can download")


def _drive_error(response):
    response.read()
    response.close()
    reason, message = google_reason(response.content)
    try:
        details = response.json().get("error", {}).get("details") or []
        reasons = {reason, *(d.get("reason", "") for d in details if isinstance(d, dict))}
    except (ValueError, AttributeError, TypeError):
        reasons = {reason}
    status = response.status_code
    if 'error="insufficient_scope"' in response.headers.get("www-authenticate", ""):
        reasons.add("insufficient_scope")
    if status == 403 and reasons & SCOPE_REASONS:
        # Granted once but not in this token (the user unticked it, or revoked it at Google): a retry cannot help.
        return PermanentError(
            PROVIDER,
            f"Google Drive refused the download: this connection's token lacks {DRIVE_MEET_READONLY}; "
            "authorize the Google connection again with the 'meeting_records' capability.",
            code="insufficient_scope",
            http_status=403,
        )
    if status == 404:
        # Drive answers 404 both for a deleted file and for one this token may not see: neither comes back by waiting.
        return PermanentError(
            PROVIDER,
            "The file is gone from Google Drive (deleted, or no longer shared with this account); "
            "there is nothing to download.",
            code="file_gone",
            http_status=404,
        )
    if status == 403 and reason in GOOGLE_RATE_REASONS:
        status = 429
    return error_from_http(PROVIDER, status, headers=dict(response.headers), code=reason or None, message=message)


def recording_stream(*, conn, download_url):
    """Open a Meet recording's MP4 (or a transcript exported as text) in Drive; the caller iterates and closes it."""
    url, operation = _drive_url(download_url)
    # A token refresh, if due, is its own call (on google_oauth), not part of this one.
    oauth.access_token(connection=conn)
    with DRIVE.attempt(operation, owner=conn.owner_id, scope=f"user:{conn.pk}") as att:
        request = _drive_client().build_request("GET", url, timeout=gateway.timeout_for(PROVIDER))
        # Redirects are followed; httpx drops the Authorization header when one leaves Google's host.
        response = _drive_client().send(
            request, auth=oauth.bearer_auth(connection=conn), stream=True, follow_redirects=True
        )
        att.record(http_status=response.status_code, units={"requests": 1})
        if response.status_code >= 400:
            raise _drive_error(response)
        length = int(response.headers.get("content-length") or 0)
        if length:
            att.record(units={"bytes_out": length})
    return response
