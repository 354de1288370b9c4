"""A stand-in for Zoom's REST API with Zoom's response shapes, mounted on respx (httpx's transport).

Besides meetings, registrants and recordings it lists a host's meetings (`GET /users/me/meetings`: `type`,
`from`/`to` dates, `page_size` and `next_page_token`; items without settings, as Zoom's List meetings answers),
at most `page_limit` a page. Zoom answers a registrant added again (the same email on the same meeting) with the
registrant it has. A request whose answer is in `lose_next` is applied, and the client gets that answer instead:
an httpx exception raised (a timeout, a reset) or a (status, body) such as a 502.
"""

import base64
import datetime as dt
import itertools
import json

import httpx

from .fault_plan import answered

API = "https://api.zoom.test/v2"
OAUTH = "https://zoom.test/oauth/token"
# What List meetings shows of each meeting (no settings: those only GET /meetings/{id} answers).
LISTED = ("id", "uuid", "host_id", "topic", "type", "start_time", "duration", "timezone", "join_url")


class FakeZoom:
    account_id, client_id, client_secret = "acct_123", "zoom_client", "zoom_secret_value"
    webhook_secret = "zoom_webhook_secret_token"

    def __init__(self):
        self.meetings = {}
        self.registrants = {}
        self.recordings = {}
        self.tokens_issued = 0
        self.requests = []
        self.fail_next = []  # (status, body, headers) or an httpx exception for the next API request
        self.lose_next = []  # an httpx exception or (status, body) answered after the next API request is applied
        self.page_limit = 300
        self.storage_fail = []  # httpx.Response answers for the next recording downloads
        self._ids = itertools.count(85746065000)

    def routes(self, router):
        router.post(OAUTH).mock(side_effect=self._token)
        router.route(url__startswith=API).mock(side_effect=self._api)
        router.get(url__startswith="https://zoom-storage.test/").mock(side_effect=self._storage)

    def _storage(self, request):
        if self.storage_fail:
            return self.storage_fail.pop(0)
        return httpx.Response(200, content=b"MP4DATA" * 1000, headers={"content-type": "video/mp4"})

    def _token(self, request):
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return httpx.Response(401, json={"reason": "Invalid client_id or client_secret", "error": "invalid_client"})
        if (
            request.url.params.get("grant_type") != "account_credentials"
            or request.url.params.get("account_id") != self.account_id
        ):
            return httpx.Response(400, json={"reason": "Invalid request", "error": "invalid_request"})
        self.tokens_issued += 1
        return httpx.Response(
            200,
            json={
                "access_token": f"tok{self.tokens_issued}",
                "token_type": "bearer",
                "expires_in": 3599,
                "scope": "meeting:write:admin",
            },
        )  # noqa: E501

    def _api(self, request):
        self.requests.append(request)
        if not request.headers.get("authorization", "").startswith("Bearer tok"):
            return httpx.Response(401, json={"code": 124, "message": "Invalid access token."})
        return answered(self, request)

    def _answer(self, request):
        path = request.url.path.removeprefix("/v2")
        parts = path.strip("/").split("/")
        body = json.loads(request.content) if request.content else {}
        if request.method == "POST" and path == "/users/me/meetings":
            return self._create(body)
        if request.method == "GET" and path == "/users/me/meetings":
            return self._list(request.url.params)
        if parts[0] == "meetings" and len(parts) >= 2:
            mid = parts[1]
            if mid not in self.meetings:
                return httpx.Response(404, json={"code": 3001, "message": f"Meeting does not exist: {mid}."})
            if len(parts) == 2 and request.method == "GET":
                return httpx.Response(200, json=self.meetings[mid])
            if len(parts) == 2 and request.method == "PATCH":
                m = self.meetings[mid]
                m.update({k: v for k, v in body.items() if k != "settings"})
                m["settings"].update(body.get("settings", {}))
                return httpx.Response(204)
            if len(parts) == 2 and request.method == "DELETE":
                del self.meetings[mid]
                return httpx.Response(204)
            if parts[2:] == ["registrants"] and request.method == "POST":
                known = [r for r, v in self.registrants.items() if (v["meeting"], v["email"]) == (mid, body["email"])]
                rid = known[0] if known else f"reg_{len(self.registrants) + 1}"
                self.registrants[rid] = {"meeting": mid, **body}
                return httpx.Response(
                    201,
                    json={
                        "id": int(mid),
                        "registrant_id": rid,
                        "join_url": f"https://us02web.zoom.us/w/{mid}?tk={rid}",
                    },
                )  # noqa: E501
            if parts[2:] == ["recordings"]:
                if mid not in self.recordings:
                    return httpx.Response(404, json={"code": 3301, "message": "This recording does not exist."})
                return httpx.Response(200, json={"id": int(mid), "recording_files": self.recordings[mid]})
        return httpx.Response(404, json={"code": 300, "message": f"no route {request.method} {path}"})

    def _list(self, params):
        """List meetings: the scheduled ones whose start falls on the `from`..`to` dates (UTC here), in pages."""
        if params.get("type") != "scheduled":
            return httpx.Response(400, json={"code": 300, "message": "the fake lists only type=scheduled"})
        first, last = dt.date.fromisoformat(params["from"]), dt.date.fromisoformat(params["to"])
        items = [
            {k: m[k] for k in LISTED} | {"created_at": "2026-01-01T00:00:00Z"}
            for m in self.meetings.values()
            if first <= dt.date.fromisoformat(m["start_time"][:10]) <= last
        ]
        size = min(int(params.get("page_size", 30)), 300, self.page_limit)
        start = int(params.get("next_page_token") or 0)
        following = str(start + size) if start + size < len(items) else ""
        page = {"page_size": size, "total_records": len(items), "next_page_token": following}
        return httpx.Response(200, json={**page, "meetings": items[start : start + size]})

    def add_meeting(self, **body):
        """A meeting made at Zoom outside the hub (by hand, in Zoom's own app): its id."""
        return str(self._create({"type": 2, "duration": 45, **body}).json()["id"])

    def _create(self, body):
        mid = str(next(self._ids))
        settings = {
            "waiting_room": False,
            "mute_upon_entry": False,
            "auto_recording": "none",
            "approval_type": 2,
            "global_dial_in_numbers": [
                {"country_name": "US", "number": "+1 646 558 8656", "type": "toll", "country": "US"}
            ],
            **body.get("settings", {}),
        }
        meeting = {
            "id": int(mid),
            "uuid": f"uuid-{mid}==",
            "host_id": "host_1",
            "topic": body["topic"],
            "type": body.get("type", 2),
            "start_time": body.get("start_time"),
            "duration": body.get("duration"),
            "timezone": body.get("timezone", "UTC"),
            "agenda": body.get("agenda", ""),
            "join_url": f"https://us02web.zoom.us/j/{mid}?pwd=abc",
            "start_url": f"https://us02web.zoom.us/s/{mid}?zak=secret",
            "password": "x7Yq2",
            "settings": settings,
        }
        self.meetings[mid] = meeting
        return httpx.Response(201, json=meeting)

    def record(self, mid):
        self.recordings[mid] = [
            {
                "id": "rec-file-1",
                "meeting_id": f"uuid-{mid}==",
                "recording_start": "2030-01-10T15:00:05Z",
                "recording_end": "2030-01-10T15:40:00Z",
                "file_type": "MP4",
                "file_size": 7000,
                "recording_type": "shared_screen_with_speaker_view",
                "download_url": f"https://zoom-storage.test/rec/download/{mid}",
                "status": "completed",
            }
        ]
