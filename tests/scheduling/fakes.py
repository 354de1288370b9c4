"""Stand-ins for Microsoft Graph (Teams), Webex and Google Calendar/Meet with their real response shapes.

Graph and Webex are mounted on respx (httpx's transport); Google's client
libraries speak httplib2, so `FakeGoogle` is an httplib2-compatible transport
(`request(uri, method, body, headers, ...) -> (response, content)`) installed in
place of integrations.google_http.OneSendHttp, the hub's httplib2.Http. Every
request is recorded, with its token, so tests see exactly what reached the
"provider".
"""

import datetime as dt
import itertools
import json
from urllib.parse import parse_qs, unquote, urlsplit

import httplib2
import httpx

from .fault_plan import answered
from .graph_fake_base import GraphFakeBase

GRAPH = "https://graph.microsoft.test/v1.0"
WEBEX = "https://webexapis.test/v1"


class FakeGraph(GraphFakeBase):
    """Graph for Teams meetings: events with their Teams meeting, onlineMeetings, subscriptions. Creates under a
    `transactionId` and lost answers (`lose_next`) are played as GraphFakeBase says."""

    token = "eyJ-graph-token"
    app_token = "eyJ-app-only-token"  # the hub app's client-credentials token (Teams call events, beta)

    def __init__(self):
        super().__init__()
        self.events = {}
        self.online = {}
        self.recordings = {}
        self.transcripts = {}
        self.requests = []
        self.fail_next = []
        self.cancelled = []
        self.subscriptions = {}
        self.while_subscribing = None  # called before a subscription create is answered (while the call is out)
        self.while_deleting = None  # called with the id before a subscription delete is answered
        self.attendance = {}
        self._ids = itertools.count(1)

    def routes(self, router):
        router.route(url__startswith=GRAPH.removesuffix("/v1.0")).mock(side_effect=self._handle)

    def _answer_to(self, request):
        self.requests.append(request)
        beta = request.url.path.startswith("/beta/")
        if request.headers.get("authorization") != f"Bearer {self.app_token if beta else self.token}":
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}})
        if self.fail_next:
            status, body, headers = self.fail_next.pop(0)
            return httpx.Response(status, json=body, headers=headers)
        path = request.url.path.removeprefix("/beta" if beta else "/v1.0")
        parts = path.strip("/").split("/")
        body = json.loads(request.content) if request.content else {}
        if parts[:2] == ["me", "events"]:
            return self._events(request, parts[2:], body)
        if parts[:2] == ["me", "onlineMeetings"]:
            return self._online(request, parts[2:], body)
        if parts[0] == "subscriptions":
            return self._subscriptions(request, parts[1:], body)
        return httpx.Response(404, json={"error": {"code": "NotFound", "message": path}})

    def _events(self, request, rest, body):
        if not rest and request.method == "POST":
            made = self._made_before(body)
            if made is not None:
                return made
            n = next(self._ids)
            eid, oid = f"AAMkAG{n}=", f"MSo1N2Y5ZGFj{n}"
            join = f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{n}%40thread.v2/0"
            event = {
                "id": eid,
                **body,
                "onlineMeeting": {"joinUrl": join, "conferenceId": f"3{n}4567", "tollNumber": "+1 425-555-0100"},
            }
            self.events[eid] = event
            self._remember(body, eid)
            self.online[oid] = {
                "id": oid,
                "joinWebUrl": join,
                "subject": body.get("subject"),
                "joinMeetingIdSettings": {"joinMeetingId": f"2{n}3456789", "passcode": f"Xy{n}pQ"},
                "audioConferencing": {"tollNumber": "+1 425-555-0100", "tollFreeNumbers": ["+1 800-555-0100"]},
                "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": False},
                "recordAutomatically": False,
            }
            return httpx.Response(201, json=event)
        eid = unquote(rest[0])
        if eid not in self.events:
            return httpx.Response(404, json={"error": {"code": "ErrorItemNotFound", "message": "not found"}})
        if len(rest) == 1 and request.method == "GET":
            return httpx.Response(200, json=self.events[eid])
        if len(rest) == 1 and request.method == "PATCH":
            self.events[eid].update(body)
            return httpx.Response(200, json=self.events[eid])
        if len(rest) == 1 and request.method == "DELETE":
            del self.events[eid]
            return httpx.Response(204)
        if rest[1:] == ["cancel"] and request.method == "POST":
            self.cancelled.append((eid, body.get("comment", "")))
            del self.events[eid]
            return httpx.Response(202)
        return httpx.Response(405, json={"error": {"code": "MethodNotAllowed", "message": ""}})

    def _online(self, request, rest, body):
        if not rest and request.method == "GET":
            flt = request.url.params.get("$filter", "")
            url = flt.removeprefix("JoinWebUrl eq '").removesuffix("'").replace("''", "'")
            return httpx.Response(200, json={"value": [m for m in self.online.values() if m["joinWebUrl"] == url]})
        oid = rest[0]
        if oid not in self.online:
            return httpx.Response(404, json={"error": {"code": "NotFound", "message": "no meeting"}})
        if len(rest) == 1 and request.method == "PATCH":
            self.online[oid].update(body)
            return httpx.Response(200, json=self.online[oid])
        if rest[1:] == ["recordings"]:
            return httpx.Response(200, json={"value": self.recordings.get(oid, [])})
        if rest[1:] == ["transcripts"]:
            return httpx.Response(200, json={"value": self.transcripts.get(oid, [])})
        if len(rest) == 3 and rest[1] in ("recordings", "transcripts") and request.method == "GET":
            found = [r for r in getattr(self, rest[1]).get(oid, []) if r["id"] == unquote(rest[2])]
            if not found:
                return httpx.Response(404, json={"error": {"code": "NotFound", "message": "no such item"}})
            return httpx.Response(200, json=found[0])
        if rest[1:] == ["attendanceReports"]:
            summaries = [{k: v for k, v in r.items() if k != "attendanceRecords"} for r in self.attendance.get(oid, [])]
            return httpx.Response(200, json={"value": summaries})
        if len(rest) == 3 and rest[1] == "attendanceReports":
            found = [r for r in self.attendance.get(oid, []) if r["id"] == rest[2]]
            if not found or request.url.params.get("$expand") != "attendanceRecords":
                return httpx.Response(404, json={"error": {"code": "NotFound", "message": "no such report"}})
            return httpx.Response(200, json=found[0])
        if len(rest) == 4 and rest[1] == "recordings" and rest[3] == "content":
            return httpx.Response(200, content=b"TEAMSMP4" * 100, headers={"content-type": "video/mp4"})
        return httpx.Response(404, json={"error": {"code": "NotFound", "message": "/".join(rest)}})

    def _subscriptions(self, request, rest, body):
        if not rest and request.method == "GET":
            # The organizer's token lists what the app made for them; the app's own, what it made for anyone.
            # Without the clientState each was made with (null).
            endpoint = request.url.path.split("/")[1]
            listed = [s for s in self.subscriptions.values() if endpoint == "beta" or s["_endpoint"] == endpoint]
            value = [{**{k: v for k, v in s.items() if k != "_endpoint"}, "clientState": None} for s in listed]
            return httpx.Response(200, json={"value": value})
        if not rest and request.method == "POST":
            if self.while_subscribing is not None:
                self.while_subscribing()
            sid = f"sub-{next(self._ids)}"
            self.subscriptions[sid] = {"id": sid, **body, "_endpoint": request.url.path.split("/")[1]}
            return httpx.Response(201, json=self.subscriptions[sid])
        sid = rest[0] if rest else ""
        if sid not in self.subscriptions:
            return httpx.Response(404, json={"error": {"code": "ResourceNotFound", "message": "no subscription"}})
        if request.method == "PATCH":
            self.subscriptions[sid].update(body)
            return httpx.Response(200, json=self.subscriptions[sid])
        if request.method == "DELETE":
            if self.while_deleting is not None:
                self.while_deleting(sid)
            del self.subscriptions[sid]
            return httpx.Response(204)
        return httpx.Response(405, json={"error": {"code": "MethodNotAllowed", "message": ""}})

    def record(self, oid):
        rid = f"rec-{oid}"
        self.recordings[oid] = [
            {
                "id": rid,
                "meetingId": oid,
                "createdDateTime": "2030-01-10T15:01:00Z",
                "endDateTime": "2030-01-10T15:40:00Z",
                "recordingContentUrl": f"{GRAPH}/me/onlineMeetings/{oid}/recordings/{rid}/content",
            }
        ]
        self.transcripts[oid] = [
            {
                "id": f"tr-{oid}",
                "createdDateTime": "2030-01-10T15:01:00Z",
                "endDateTime": "2030-01-10T15:40:00Z",
                "transcriptContentUrl": f"{GRAPH}/me/onlineMeetings/{oid}/transcripts/tr-{oid}/content",
            }
        ]


class FakeWebex:
    """Webex meetings, recordings and webhooks. A meeting keeps the `integrationTags` it was made with, and List
    Meetings finds it by one (`integrationTag`, with `from`/`to` bounding its start); `invitations` is every
    invitation mailed (sendEmail). `fail_next` answers the next request instead ((status, body, headers), or an
    httpx exception: nothing reached Webex); `lose_next` applies it and then answers instead (an httpx exception,
    or (status, body))."""

    token = "webex-access-token"

    def __init__(self):
        self.meetings = {}
        self.webhooks = []
        self.recordings = []
        self.requests = []
        self.invitations = []  # (meeting id, email) for each invitation mailed
        self.fail_next = []
        self.lose_next = []
        self._ids = itertools.count(1)

    def routes(self, router):
        router.route(url__startswith=WEBEX).mock(side_effect=self._handle)
        router.get(url__startswith="https://webex-storage.test/").mock(
            return_value=httpx.Response(200, content=b"WEBEXMP4" * 10, headers={"content-type": "video/mp4"})
        )

    def _handle(self, request):
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"message": "The request requires a valid access token.", "errors": []})
        return answered(self, request)

    def _answer(self, request):
        path = request.url.path.removeprefix("/v1")
        parts = path.strip("/").split("/")
        body = json.loads(request.content) if request.content else {}
        if parts == ["people", "me"]:
            return httpx.Response(200, json={"id": "Y2lzY29zcGFyazovL3VzL1BFT1BMRS8x", "emails": ["ana@webex.example"]})
        if parts == ["meetings"] and request.method == "POST":
            return self._create(body)
        if parts == ["meetings"] and request.method == "GET":
            return self._list(request.url.params)
        if parts[0] == "meetings" and len(parts) == 2:
            mid = parts[1]
            if mid not in self.meetings:
                return httpx.Response(404, json={"message": "Meeting not found.", "trackingId": "t1"})
            if request.method == "GET":
                return httpx.Response(200, json=self.meetings[mid])
            if request.method == "PUT":
                missing = [f for f in ("title", "password", "start", "end") if f not in body]
                if missing:
                    return httpx.Response(400, json={"message": f"missing {missing}", "errors": []})
                self.meetings[mid].update({k: v for k, v in body.items() if k != "sendEmail"})
                self.meetings[mid]["lastSendEmail"] = body.get("sendEmail")
                return httpx.Response(200, json=self.meetings[mid])
            if request.method == "DELETE":
                self.meetings.pop(mid)
                return httpx.Response(204)
        if parts == ["recordings"]:
            mid = request.url.params.get("meetingId")
            return httpx.Response(200, json={"items": [r for r in self.recordings if r["meetingSeriesId"] == mid]})
        if parts[0] == "recordings" and len(parts) == 2:
            rec = next((r for r in self.recordings if r["id"] == parts[1]), None)
            if rec is None:
                return httpx.Response(404, json={"message": "not found"})
            links = {"recordingDownloadLink": f"https://webex-storage.test/{rec['id']}.mp4?sig=abc", "expiration": ""}
            return httpx.Response(200, json={**rec, "temporaryDirectDownloadLinks": links})
        if parts == ["webhooks"] and request.method == "GET":
            return httpx.Response(200, json={"items": self.webhooks})
        if parts == ["webhooks"] and request.method == "POST":
            hook = {"id": f"wh{len(self.webhooks) + 1}", "status": "active", **body}
            self.webhooks.append(hook)
            return httpx.Response(200, json=hook)
        return httpx.Response(404, json={"message": f"no route {request.method} {path}"})

    def _create(self, body):
        n = next(self._ids)
        mid = f"870f51ff287b41be84648412901e{n:04d}"
        meeting = {
            "id": mid,
            "meetingNumber": f"2{n:03d}1234567",
            "meetingType": "meetingSeries",
            "state": "active",
            "password": "BgJep@43",
            "webLink": f"https://example.webex.com/example/j.php?MTID=m{mid}",
            "hostEmail": "ana@webex.example",
            "telephony": {
                "accessCode": f"2{n:03d}1234567",
                "callInNumbers": [
                    {"label": "United States Toll", "callInNumber": "+1-415-527-5035", "tollType": "toll"}
                ],
            },
            **{k: v for k, v in body.items() if k != "sendEmail"},
        }
        self.meetings[mid] = meeting
        if body.get("sendEmail", True):
            self.invitations += [(mid, i["email"]) for i in body.get("invitees", [])]
        return httpx.Response(200, json=meeting)

    def _list(self, params):
        """List Meetings, as far as the hub asks it: meeting series by integration tag, their start in from..to."""
        tag, first, last = params.get("integrationTag"), params.get("from"), params.get("to")
        if params.get("meetingType", "meetingSeries") != "meetingSeries" or not (tag and first and last):
            return httpx.Response(400, json={"message": "the fake lists meeting series by integrationTag, from, to"})
        items = [
            m
            for m in self.meetings.values()
            if tag in m.get("integrationTags", []) and _instant(first) <= _instant(m["start"]) < _instant(last)
        ]
        return httpx.Response(200, json={"items": items})

    def record(self, mid):
        self.recordings.append(
            {
                "id": f"4f914b1dfe3c4d11a61730f18c0f{len(self.recordings):04d}",
                "meetingId": f"{mid}_I_1",
                "meetingSeriesId": mid,
                "topic": "Recorded",
                "createTime": "2030-01-10T16:00:00Z",
                "timeRecorded": "2030-01-10T15:00:00Z",
                "format": "MP4",
                "sizeBytes": 80,
                "downloadUrl": "https://example.webex.com/recordingservice/...",
            }
        )


def _instant(value):
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class FakeGoogle:
    """Google Calendar v3 and Meet v2 as an httplib2 transport."""

    token = "ya29.meet-token"

    def __init__(self):
        self.events = {}
        self.records = {}
        self.requests = []
        self.fail_next = []
        self.pending_first = False
        self._ids = itertools.count(1)
        self.taken = set()  # every event id ever inserted (Google keeps a deleted event's id)
        self.timeout = None

    # google_http.OneSendHttp(timeout=...) is replaced by this factory in the fixture.
    def __call__(self, *args, **kwargs):
        self.timeout = kwargs.get("timeout")
        return self

    def request(self, uri, method="GET", body=None, headers=None, redirections=5, connection_type=None):
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        url = urlsplit(uri)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        data = json.loads(body) if body else {}
        self.requests.append({"method": method, "host": url.netloc, "path": url.path, "params": params, "body": data})
        if headers.get("authorization") != f"Bearer {self.token}":
            return self._answer(
                401, {"error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}}
            )
        if self.fail_next:
            status, payload, extra = self.fail_next.pop(0)
            return self._answer(status, payload, extra)
        if url.netloc == "meet.googleapis.com":
            return self._meet(url.path, params)
        path = url.path.removeprefix("/calendar/v3/calendars/primary/events")
        eid = path.strip("/")
        if method == "POST" and not eid:
            return self._insert(data, params)
        if eid not in self.events:
            return self._answer(
                404, {"error": {"code": 404, "message": "Not Found", "errors": [{"reason": "notFound"}]}}
            )
        if method == "GET":
            event = self.events[eid]
            event["conferenceData"]["createRequest"]["status"]["statusCode"] = "success"
            return self._answer(200, event)
        if method == "PATCH":
            self.events[eid].update(data)
            self.events[eid]["sendUpdates"] = params.get("sendUpdates")
            return self._answer(200, self.events[eid])
        if method == "DELETE":
            self.events.pop(eid)["deletedWith"] = params.get("sendUpdates")
            self.deleted = (eid, params.get("sendUpdates"))
            return self._answer(204, None)
        return self._answer(405, {"error": {"code": 405, "message": "no"}})

    def _insert(self, data, params):
        if data.get("id") in self.taken:
            # A client-chosen id is unique per calendar, a deleted event's too.
            message = "The requested identifier already exists."
            return self._answer(
                409,
                {"error": {"code": 409, "message": message, "errors": [{"reason": "duplicate", "message": message}]}},
            )
        n = next(self._ids)
        eid, code = data.get("id") or f"evt{n}abc", f"abc-mnop-xy{n}"
        self.taken.add(eid)
        create = data.get("conferenceData", {}).get("createRequest") or {}
        pending = self.pending_first
        event = {
            "kind": "calendar#event",
            "id": eid,
            "status": "confirmed",
            "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
            **{k: v for k, v in data.items() if k != "conferenceData"},
            "sendUpdates": params.get("sendUpdates"),
            "conferenceDataVersion": params.get("conferenceDataVersion"),
            "conferenceData": {
                "createRequest": {**create, "status": {"statusCode": "pending" if pending else "success"}},
                "entryPoints": [
                    {
                        "entryPointType": "video",
                        "uri": f"https://meet.google.com/{code}",
                        "label": f"meet.google.com/{code}",
                        "meetingCode": code,
                    },
                    {
                        "entryPointType": "phone",
                        "uri": "tel:+1-650-555-0101",
                        "label": "+1 650-555-0101",
                        "pin": "123456789",
                        "regionCode": "US",
                    },
                ],
                "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
                "conferenceId": code,
            },
        }
        if not create:
            del event["conferenceData"]
        self.events[eid] = event
        answer = json.loads(json.dumps(event))
        if pending:
            answer["conferenceData"].pop("entryPoints")
            answer["conferenceData"].pop("conferenceId")
        return self._answer(200, answer)

    def _meet(self, path, params):
        path = path.removeprefix("/v2/")
        if path == "conferenceRecords":
            code = params.get("filter", "").split('"')[1] if '"' in params.get("filter", "") else ""
            found = [{"name": name, "space": f"spaces/{code}"} for name, r in self.records.items() if r["code"] == code]
            return self._answer(200, {"conferenceRecords": found})
        name, _, kind = path.rpartition("/")
        record = self.records.get(name)
        if record is None:
            return self._answer(404, {"error": {"code": 404, "message": "Not found"}})
        return self._answer(200, {kind: record[kind]})

    def record(self, code):
        name = f"conferenceRecords/rec-{code}"
        self.records[name] = {
            "code": code,
            "recordings": [
                {
                    "name": f"{name}/recordings/r1",
                    "state": "FILE_GENERATED",
                    "startTime": "2030-01-10T15:00:00Z",
                    "endTime": "2030-01-10T15:40:00Z",
                    "driveDestination": {
                        "file": "1AbC",
                        "exportUri": "https://drive.google.com/file/d/1AbC/view",
                    },
                },
                {"name": f"{name}/recordings/r2", "state": "STARTED"},
            ],
            "transcripts": [
                {
                    "name": f"{name}/transcripts/t1",
                    "state": "FILE_GENERATED",
                    "docsDestination": {
                        "document": "1DoC",
                        "exportUri": "https://docs.google.com/document/d/1DoC/view",
                    },
                }
            ],
        }

    @staticmethod
    def _answer(status, payload, extra=None):
        response = httplib2.Response({"status": str(status), "content-type": "application/json", **(extra or {})})
        return response, (json.dumps(payload).encode() if payload is not None else b"")
