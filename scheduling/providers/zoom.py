"""Zoom's REST API over httpx: the only module that speaks Zoom.

Authentication is Server-to-Server OAuth: `POST https://zoom.us/oauth/token`
with `grant_type=account_credentials`, the account id and the app's client id
and secret (HTTP Basic). The token lasts an hour; it is cached (keyed by a hash
of the credentials, never the secret itself) until a minute before it expires,
and dropped on a 401 so the next attempt fetches a new one.

Every HTTP request is one `gateway.attempt` (ProviderCall row, shared limiter,
breaker) with no retries of its own. Zoom answers errors as
`{"code": 3001, "message": "Meeting does not exist: 123."}`: 429 and 5xx are
retryable (Retry-After honoured), other 4xx permanent.

Zoom takes no idempotency key. A create under the client's Idempotency-Key
carries its create id as a custom key (`settings.custom_keys`, CREATE_KEY), and
`meeting_find` is how a retry finds what a lost attempt made: List meetings shows
no settings, so it reads each listed meeting of the same topic and start for
that key (services.meetings decides when to look).
"""

import datetime as dt
import functools
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.core.cache import cache

from integrations import egress, gateway
from integrations.errors import DomainError, PermanentError, error_from_http
from integrations.providers import HttpxAdapter, credentials_key

from .common import RecordingFile

PROVIDER = "zoom"
# Zoom's code for "Meeting does not exist": deleting what is already gone is success.
MEETING_NOT_FOUND = 3001
# The custom key (settings.custom_keys: key up to 64 characters, value up to 256) a create's id travels in.
CREATE_KEY = "integration_hub_create"
# List meetings pages (300 meetings each, Zoom's most) a lookup reads before it gives up: the hub's meetings all
# share the account's user, so a busy account can have many on the same days.
FIND_PAGES = 10


@dataclass(frozen=True)
class ZoomMeeting:
    id: str
    uuid: str
    join_url: str
    passcode: str
    start_time: str
    duration: int
    timezone: str
    dial_in: list
    settings: dict
    raw: dict = field(repr=False)


@dataclass(frozen=True)
class Registrant:
    id: str
    join_url: str


class ZoomAdapter(HttpxAdapter):
    provider = PROVIDER
    vendor = "Zoom"


ZOOM = ZoomAdapter()


@functools.cache
def _client():
    # trust_env=True for the transport: the CA bundle SSL_CERT_FILE names, as this client always took (its
    # proxy is the egress rule's, never the environment's own reading).
    return httpx.Client(
        headers={"Accept": "application/json", "User-Agent": "integration-hub"},
        transport=egress.transport(trust_env=True),
    )


def _credentials_key():
    return "zoom:token:" + credentials_key(
        settings.ZOOM_ACCOUNT_ID, settings.ZOOM_CLIENT_ID, settings.ZOOM_CLIENT_SECRET
    )


def _send(method, url, *, operation, owner=None, **kwargs):
    """One HTTP request as one gateway attempt; the response (status < 400) or our error."""
    with ZOOM.attempt(operation, owner=owner) as att:
        response = _client().request(method, url, timeout=gateway.timeout_for(PROVIDER), **kwargs)
        request_id = response.headers.get("x-zm-trackingid", "")
        att.record(http_status=response.status_code, request_id=request_id)
        if response.status_code >= 400:
            raise _error(response, request_id)
    return response


def _error(response, request_id):
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("code") if isinstance(body, dict) else None
    reason = body.get("reason") or body.get("error") if isinstance(body, dict) else None
    message = (body.get("message") if isinstance(body, dict) else None) or reason or f"HTTP {response.status_code}"
    if response.status_code == 401:
        cache.delete(_credentials_key())  # a revoked or expired token: fetch a new one next time
    return error_from_http(
        PROVIDER,
        response.status_code,
        headers=dict(response.headers),
        code=str(code) if code is not None else None,
        message=message,
        request_id=request_id,
    )


def access_token():
    key = _credentials_key()
    token = cache.get(key)
    if token:
        return token
    response = _send(
        "POST",
        settings.ZOOM_OAUTH_TOKEN_URL,
        operation="oauth.token",
        params={"grant_type": "account_credentials", "account_id": settings.ZOOM_ACCOUNT_ID},
        auth=(settings.ZOOM_CLIENT_ID, settings.ZOOM_CLIENT_SECRET),
    )
    body = response.json()
    cache.set(key, body["access_token"], max(60, int(body.get("expires_in", 3600)) - 60))
    return body["access_token"]


def _api(method, path, *, operation, owner=None, **kwargs):
    headers = {"Authorization": f"Bearer {access_token()}"}
    return _send(method, f"{settings.ZOOM_API_BASE}{path}", operation=operation, owner=owner, headers=headers, **kwargs)


def _meeting(body):
    meeting_settings = body.get("settings") or {}
    return ZoomMeeting(
        id=str(body["id"]),
        uuid=body.get("uuid", ""),
        join_url=body.get("join_url", ""),
        passcode=body.get("password", ""),
        start_time=body.get("start_time", ""),
        duration=int(body.get("duration") or 0),
        timezone=body.get("timezone", ""),
        dial_in=[
            {
                "country": n.get("country_name") or n.get("country", ""),
                "number": n.get("number", ""),
                "type": n.get("type", ""),
            }
            for n in meeting_settings.get("global_dial_in_numbers") or []
        ],
        settings=meeting_settings,
        raw=body,
    )


def meeting_create(*, payload, owner=None, create_id=""):
    """POST /users/me/meetings (a scheduled meeting, type 2); the provider's meeting. With a create id the meeting
    carries it as a custom key, by which `meeting_find` knows it."""
    if create_id:
        keys = [{"key": CREATE_KEY, "value": create_id}]
        payload = {**payload, "settings": {**payload.get("settings", {}), "custom_keys": keys}}
    response = _api("POST", "/users/me/meetings", operation="meeting.create", owner=owner, json=payload)
    return _meeting(response.json())


def meeting_find(*, create_id, topic, start_time, owner=None):
    """The meeting a create under `create_id` made, or None: for a retry whose earlier attempt may have made it.

    The host's scheduled meetings from the day before the start to the day after (List meetings takes whole
    dates, and a day either side covers whichever zone Zoom reads them in); those with this topic and start are
    read one by one (the list shows no settings): only the one carrying this create's custom key is taken, never
    a meeting of the same title and time made by hand or by another create.
    """
    day = start_time.astimezone(dt.UTC).date()
    window = {"from": (day - dt.timedelta(days=1)).isoformat(), "to": (day + dt.timedelta(days=1)).isoformat()}
    params = {"type": "scheduled", **window, "page_size": 300}
    for _ in range(FIND_PAGES):
        page = _api("GET", "/users/me/meetings", operation="meeting.find", owner=owner, params=params).json()
        for listed in page.get("meetings") or []:
            if listed.get("topic") == topic and _starts_at(listed, start_time):
                meeting = meeting_get(meeting_id=listed["id"], owner=owner)
                if {"key": CREATE_KEY, "value": create_id} in (meeting.settings.get("custom_keys") or []):
                    return meeting
        if not page.get("next_page_token"):
            return None
        params["next_page_token"] = page["next_page_token"]
    # Not found within the pages read is not "never made": making it again could be the second meeting.
    raise DomainError(
        409,
        "create_outcome_unknown",
        "An earlier attempt of this create (same Idempotency-Key) may have made the meeting, and Zoom holds more "
        f"meetings around {day} than the hub looks through: check the Zoom account, and send the create with a "
        "new Idempotency-Key if the meeting is not there.",
    )


def _starts_at(listed, start_time):
    """Within the minute: the custom key is what identifies the meeting, the time only spares reading others."""
    try:
        return abs(dt.datetime.fromisoformat(listed.get("start_time") or "") - start_time) < dt.timedelta(minutes=1)
    except (TypeError, ValueError):  # no start, or one without a zone
        return False


def meeting_get(*, meeting_id, owner=None):
    return _meeting(_api("GET", f"/meetings/{meeting_id}", operation="meeting.get", owner=owner).json())


def meeting_update(*, meeting_id, payload, owner=None):
    """PATCH /meetings/{id} (Zoom answers 204 with no body)."""
    _api("PATCH", f"/meetings/{meeting_id}", operation="meeting.update", owner=owner, json=payload)


def meeting_delete(*, meeting_id, notify=True, owner=None):
    """DELETE /meetings/{id}; `notify` asks Zoom to email registrants and alternative hosts. Gone already = done."""
    params = {"schedule_for_reminder": "true", "cancel_meeting_reminder": "true"} if notify else {}
    try:
        _api("DELETE", f"/meetings/{meeting_id}", operation="meeting.delete", owner=owner, params=params)
    except PermanentError as exc:
        if exc.http_status == 404 and exc.code == str(MEETING_NOT_FOUND):
            return False
        raise
    return True


def registrant_add(*, meeting_id, email, first_name, last_name="", owner=None):
    body = {"email": email, "first_name": first_name or email.split("@")[0], "last_name": last_name}
    response = _api("POST", f"/meetings/{meeting_id}/registrants", operation="registrant.add", owner=owner, json=body)
    data = response.json()
    return Registrant(id=str(data.get("registrant_id") or data.get("id", "")), join_url=data.get("join_url", ""))


def recordings_list(*, meeting_id, owner=None):
    """GET /meetings/{id}/recordings: the cloud recording files (an empty list when none yet)."""
    try:
        response = _api("GET", f"/meetings/{meeting_id}/recordings", operation="recordings.list", owner=owner)
    except PermanentError as exc:
        # 3301 "This recording does not exist": nothing recorded (yet) is not a failure.
        if exc.http_status == 404 and exc.code == "3301":
            return []
        raise
    return [recording_file(f) for f in response.json().get("recording_files") or []]


def recording_file(data):
    return RecordingFile(
        id=str(data.get("id", "")),
        file_type=data.get("file_type", ""),
        recording_type=data.get("recording_type", ""),
        size_bytes=int(data.get("file_size") or 0),
        download_url=data.get("download_url", ""),
        recording_start=data.get("recording_start", ""),
        recording_end=data.get("recording_end", ""),
    )


def recording_stream(*, download_url, owner=None):
    """Open the recording's download (Zoom redirects to its storage); the caller iterates and closes it."""
    headers = {"Authorization": f"Bearer {access_token()}"}
    with ZOOM.attempt("recording.download", owner=owner) as att:
        request = _client().build_request("GET", download_url, headers=headers, timeout=gateway.timeout_for(PROVIDER))
        response = _client().send(request, stream=True, follow_redirects=True)
        att.record(http_status=response.status_code)
        if response.status_code >= 400:
            response.read()
            response.close()
            raise _error(response, "")
        length = int(response.headers.get("content-length") or 0)
        if length:
            att.record(units={"bytes_out": length})
    return response
