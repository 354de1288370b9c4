"""Webex meetings over the Webex REST API with httpx: the only module that speaks Webex.

Authentication is the user's own Webex OAuth integration (authorization code +
PKCE, refresh) through the hub's connections flow: `WebexOAuth` below is the
OAuth adapter (the RFC flow of integrations.oauth, plus `GET /people/me` to name
the account, which Webex's token answer does not). Access tokens last 14 days
and refresh tokens 90; the hub refreshes them like every other connection.

- `POST /meetings` with invitees (`sendEmail` mails them), breakout sessions,
  lobby (`unlockedMeetingJoinSecurity`), mute on entry
  (`audioConnectionOptions.muteAttendeeUponEntry`) and auto-recording; under
  the client's Idempotency-Key the meeting carries its create id as an
  integration tag (`integrationTags`), and `meeting_find` asks List Meetings for
  that tag (`integrationTag`): how a retry finds what a lost attempt made, since
  Webex takes no idempotency key (services.meetings decides when to look);
  `PUT /meetings/{id}` takes the whole meeting, so an update reads it first and
  sends it back with the changes; `DELETE /meetings/{id}?sendEmail=true` tells
  the invitees. Deleting what is already gone (404) is success.
- Recordings: `GET /recordings?meetingId=`; a download asks for the
  recording's short-lived `temporaryDirectDownloadLinks` at that moment.
- Webhooks (`POST /webhooks`) are registered per user, since Webex sends a
  user's events only to webhooks made with that user's token.

Every HTTP request is one gateway attempt (no retries of its own); Webex
answers errors as `{"message", "errors": [{"description"}], "trackingId"}`,
429 with Retry-After.
"""

import datetime as dt
import functools

import httpx
from django.conf import settings
from django.core.cache import cache

from integrations import egress, gateway, oauth
from integrations.errors import PermanentError, error_from_http
from integrations.oauth.providers.oauth2 import StandardOAuth2
from integrations.providers import HttpxAdapter

from .common import ProviderMeeting, RecordingFile, utc_z

PROVIDER = "webex"
ONE_DAY = dt.timedelta(days=1)
# What the hub subscribes to per user: meeting lifecycle, attendance, finished recordings.
WEBHOOK_EVENTS = (
    ("meetings", "started"),
    ("meetings", "ended"),
    ("meetings", "deleted"),
    ("meetingParticipants", "joined"),
    ("meetingParticipants", "left"),
    ("recordings", "created"),
)


class WebexAdapter(HttpxAdapter):
    provider = PROVIDER
    vendor = "Webex"


WEBEX = WebexAdapter()


def base():
    return settings.WEBEX_API_BASE.rstrip("/")


@functools.cache
def _client():
    return httpx.Client(
        headers={"Accept": "application/json", "User-Agent": "integration-hub"}, transport=egress.transport()
    )


def _error(response):
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    details = [e.get("description", "") for e in body.get("errors") or [] if isinstance(e, dict)]
    message = body.get("message") or "; ".join(d for d in details if d) or f"HTTP {response.status_code}"
    return error_from_http(
        PROVIDER,
        response.status_code,
        headers=dict(response.headers),
        message=message,
        request_id=response.headers.get("trackingid") or body.get("trackingId"),
    )


def _send(operation, method, url, *, token, owner=None, scope=None, stream=False, **kwargs):
    with WEBEX.attempt(operation, owner=owner, scope=scope) as att:
        request = _client().build_request(
            method,
            url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=gateway.timeout_for(PROVIDER),
            **kwargs,
        )
        response = _client().send(request, stream=stream, follow_redirects=stream)
        WEBEX.answered(att, response, error=_error, request_id=response.headers.get("trackingid"), stream=stream)
    return response


def _call(conn, operation, method, path, **kwargs):
    # A token refresh, if due, is its own call, not part of this one.
    token = oauth.access_token(connection=conn)
    return _send(operation, method, base() + path, token=token, owner=conn.owner_id, scope=f"user:{conn.pk}", **kwargs)


def _json(response):
    return response.json() if response.content else {}


# --- OAuth: naming the account ------------------------------------------------------------


class WebexOAuth(StandardOAuth2):
    """The RFC flow, plus `GET /people/me` so the connection knows which Webex account it is."""

    def exchange(self, config, *, code, params, state, redirect_uri, owner):
        tokens = super().exchange(config, code=code, params=params, state=state, redirect_uri=redirect_uri, owner=owner)
        if tokens.access_token:
            me = _json(_send("people.me", "GET", f"{base()}/people/me", token=tokens.access_token, owner=owner))
            tokens.account = (me.get("emails") or [""])[0]
            tokens.account_id = me.get("id", "")
        return tokens


# --- Meetings ----------------------------------------------------------------------------


def meeting_body(spec):
    """The hub's request in Webex's terms (create; an update sends only what changes over the read meeting)."""
    body = {}
    if spec.topic is not None:
        body["title"] = spec.topic
    if spec.agenda is not None:
        body["agenda"] = spec.agenda
    if spec.start_time is not None:
        body["start"] = utc_z(spec.start_time)
    if spec.end_time is not None:
        body["end"] = utc_z(spec.end_time)
    if spec.time_zone is not None:
        body["timezone"] = spec.time_zone
    if spec.participants:
        body["invitees"] = [
            {"email": p["email"], **({"displayName": p["name"]} if p.get("name") else {}), "coHost": False}
            for p in spec.participants
        ]
    asked = spec.settings or {}
    if asked.get("waiting_room") is not None:
        # Lobby on: people wait until the host admits them; off: they join directly.
        body["unlockedMeetingJoinSecurity"] = "allowJoinWithLobby" if asked["waiting_room"] else "allowJoin"
        body["enabledJoinBeforeHost"] = not asked["waiting_room"]
    if asked.get("mute_on_entry") is not None:
        body["audioConnectionOptions"] = {"muteAttendeeUponEntry": asked["mute_on_entry"]}
    if asked.get("auto_recording") is not None:
        body["enabledAutoRecordMeeting"] = asked["auto_recording"] == "cloud"
    if spec.breakout_rooms:
        body["enabledBreakoutSessions"] = True
        body["breakoutSessions"] = [
            {"name": r["name"], "invitees": list(r.get("participants", []))} for r in spec.breakout_rooms
        ]
    return body


def _meeting(body):
    telephony = body.get("telephony") or {}
    return ProviderMeeting(
        id=body["id"],
        uuid=str(body.get("meetingNumber", "")),
        join_url=body.get("webLink", ""),
        passcode=body.get("password", ""),
        dial_in=[
            {
                "country": n.get("label", ""),
                "number": n.get("callInNumber", ""),
                "type": "toll_free" if n.get("tollType") == "tollFree" else "toll",
                "access_code": telephony.get("accessCode", ""),
            }
            for n in telephony.get("callInNumbers") or []
        ],
        raw=body,
    )


def meeting_create(*, conn, spec, notify=True, create_id=""):
    """POST the meeting; with a create id (52 characters: a tag may have 64) it is the meeting's integration tag."""
    body = meeting_body(spec)
    body["sendEmail"] = notify
    if create_id:
        body["integrationTags"] = [create_id]
    return _meeting(_json(_call(conn, "meeting.create", "POST", "/meetings", json=body)))


def meeting_find(*, conn, spec, create_id):
    """The meeting series a create under `create_id` made (its integration tag), or None.

    Asked from a day before its start to a day after its end: List Meetings answers within `from`/`to`, and
    their defaults are relative to now, which a meeting weeks ahead may lie outside. Its items have the shape of
    a create's answer, so the one found is adopted as it is.
    """
    window = {"from": utc_z(spec.start_time - ONE_DAY), "to": utc_z(spec.end_time + ONE_DAY)}
    params = {"integrationTag": create_id, "meetingType": "meetingSeries", **window, "max": 10}
    page = _json(_call(conn, "meeting.find", "GET", "/meetings", params=params))
    made = [item for item in page.get("items") or [] if create_id in (item.get("integrationTags") or [])]
    return _meeting(made[0]) if made else None


def meeting_get(*, conn, external_id):
    return _meeting(_json(_call(conn, "meeting.get", "GET", f"/meetings/{external_id}")))


# Fields a PUT carries over from the meeting as read (PUT replaces the meeting as a whole).
KEPT = (
    "title",
    "agenda",
    "password",
    "start",
    "end",
    "timezone",
    "enabledAutoRecordMeeting",
    "allowAnyUserToBeCoHost",
    "enabledJoinBeforeHost",
    "enableConnectAudioBeforeHost",
    "joinBeforeHostMinutes",
    "excludePassword",
    "publicMeeting",
    "reminderTime",
    "unlockedMeetingJoinSecurity",
    "enabledBreakoutSessions",
    "audioConnectionOptions",
)


def meeting_update(*, conn, external_id, spec, notify=True):
    current = _json(_call(conn, "meeting.get", "GET", f"/meetings/{external_id}"))
    body = {k: current[k] for k in KEPT if k in current}
    changes = meeting_body(spec)
    if "audioConnectionOptions" in changes:
        changes["audioConnectionOptions"] = {
            **(current.get("audioConnectionOptions") or {}),
            **changes["audioConnectionOptions"],
        }
    body.update(changes)
    body["sendEmail"] = notify
    return _meeting(_json(_call(conn, "meeting.update", "PUT", f"/meetings/{external_id}", json=body)))


def meeting_cancel(*, conn, external_id, notify=True):
    """DELETE the meeting; `sendEmail` mails the invitees the cancellation. Gone already (404) = done."""
    try:
        _call(
            conn,
            "meeting.delete",
            "DELETE",
            f"/meetings/{external_id}",
            params={"sendEmail": "true" if notify else "false"},
        )
    except PermanentError as exc:
        if exc.http_status == 404:
            return False
        raise
    return True


# --- Recordings --------------------------------------------------------------------------


def recording_file(item):
    return RecordingFile(
        id=str(item.get("id", "")),
        file_type=str(item.get("format", "MP4")).upper(),
        recording_type="recording",
        size_bytes=int(item.get("sizeBytes") or 0),
        # The API resource, not a file: a download asks it for a fresh temporary link.
        download_url=f"{base()}/recordings/{item.get('id', '')}" if item.get("id") else "",
        recording_start=item.get("timeRecorded") or item.get("createTime", ""),
        recording_end="",
    )


def recordings_list(*, conn, external_id):
    page = _json(_call(conn, "recordings.list", "GET", "/recordings", params={"meetingId": external_id, "max": 100}))
    return [recording_file(item) for item in page.get("items") or []]


def recording_stream(*, conn, download_url):
    """Ask Webex for the recording's temporary download link, then open it; the caller iterates and closes it."""
    if not download_url.startswith(base() + "/recordings/"):
        raise PermanentError(PROVIDER, "not a Webex recording resource")
    details = _json(_call(conn, "recording.get", "GET", download_url[len(base()) :]))
    link = (details.get("temporaryDirectDownloadLinks") or {}).get("recordingDownloadLink")
    if not link:
        raise PermanentError(PROVIDER, "Webex gave no download link for this recording (is it still processing?)")
    # The temporary link carries its own authorization; our token is not sent to the storage host.
    with WEBEX.attempt("recording.download", owner=conn.owner_id, scope=f"user:{conn.pk}") as att:
        request = _client().build_request("GET", link, timeout=gateway.timeout_for(PROVIDER))
        response = _client().send(request, stream=True, follow_redirects=True)
        att.record(http_status=response.status_code)
        if response.status_code >= 400:
            response.read()
            response.close()
            raise _error(response)
        length = int(response.headers.get("content-length") or 0)
        if length:
            att.record(units={"bytes_out": length})
    return response


# --- Webhooks ----------------------------------------------------------------------------


def webhooks_ensure(*, conn, target_url, secret):
    """Register the hub's webhooks for this user once (checked at most daily); returns how many were made."""
    marker = f"webex:webhooks:{conn.pk}:{target_url}"
    if cache.get(marker):
        return 0
    existing = _json(_call(conn, "webhooks.list", "GET", "/webhooks", params={"max": 100}))
    have = {
        (w.get("resource"), w.get("event"))
        for w in existing.get("items") or []
        if w.get("targetUrl") == target_url and w.get("status", "active") == "active"
    }
    made = 0
    for resource, event in WEBHOOK_EVENTS:
        if (resource, event) in have:
            continue
        _call(
            conn,
            "webhooks.create",
            "POST",
            "/webhooks",
            json={
                "name": f"Integration Hub {resource} {event}",
                "targetUrl": target_url,
                "resource": resource,
                "event": event,
                "secret": secret,
            },
        )
        made += 1
    cache.set(marker, True, 24 * 3600)
    return made
