"""A local free/busy provider: Google Calendar's freebusy.query and Graph's getSchedule on 127.0.0.1.

Stdlib HTTP/1.1 server (Nagle off), the way the hub's other fakes are: the
real SDKs (google-api-python-client over httplib2, httpx for Graph) speak to it
through GOOGLE_CALENDAR_API_BASE and GRAPH_API_BASE, so tests and the bench
exercise real requests. Each access token belongs to one account; "primary"
is that account's own calendar, and Graph's `/me` must be the mailbox asked
about. Every request is recorded; `fail_next` queues error answers (429 with
Retry-After, 403 rateLimitExceeded, 401, 500) and `latency` delays answers.
"""

import json
import threading
import time
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer

from tests.local_http import QuietHandler, serve, stop

GOOGLE_PATH = "/calendar/v3/freeBusy"
GRAPH_PREFIX = "/graph/v1.0"


def _parse(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _clip(intervals, start, end):
    return [(max(s, start), min(e, end)) for s, e in intervals if s < end and e > start]


class FakeFreeBusy:
    def __init__(self, *, latency=0.0, port=0):
        self.latency = latency
        self.tokens = {}  # access token -> account
        self.calendars = {}  # (account, calendar id) -> [(start, end, status)]
        self.working_hours = {}  # mailbox -> Graph workingHours dict
        self.calendar_errors = {}  # (account, calendar id) -> reason
        self.requests = []  # (method, path, body dict, token)
        self.failures = []  # queued (status, body, headers) answered before anything else
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.request_queue_size = 128
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.google_base = self.base + "/calendar/v3"  # what GOOGLE_CALENDAR_API_BASE names: root + service path
        self.graph_base = self.base + GRAPH_PREFIX
        self.thread = serve(self.server)

    def stop(self):
        stop(self.server)

    # --- setting the scene -------------------------------------------------------

    def account(self, token, account):
        self.tokens[token] = account

    def busy(self, account, start, end, *, calendar="primary", status="busy"):
        calendar = account if calendar == "primary" else calendar
        self.calendars.setdefault((account, calendar), []).append((_as_dt(start), _as_dt(end), status))

    def fail_next(self, status, *, body=None, headers=None, times=1):
        for _ in range(times):
            self.failures.append(
                (status, body or {"error": {"code": str(status), "message": f"HTTP {status}"}}, headers or {})
            )

    def count(self, kind):
        path = GOOGLE_PATH if kind == "google" else f"{GRAPH_PREFIX}/me/calendar/getSchedule"
        return sum(1 for r in self.requests if r[1] == path)

    # --- answering ----------------------------------------------------------------

    def _google(self, account, body):
        start, end = _parse(body["timeMin"]), _parse(body["timeMax"])
        calendars = {}
        for item in body.get("items", []):
            cid = item["id"]
            key = (account, account if cid == "primary" else cid)
            if key in self.calendar_errors:
                calendars[cid] = {"errors": [{"domain": "global", "reason": self.calendar_errors[key]}], "busy": []}
                continue
            intervals = sorted(_clip([(s, e) for s, e, st in self.calendars.get(key, []) if st != "free"], start, end))
            calendars[cid] = {"busy": [{"start": _z(s), "end": _z(e)} for s, e in intervals]}
        return 200, {
            "kind": "calendar#freeBusy",
            "timeMin": body["timeMin"],
            "timeMax": body["timeMax"],
            "calendars": calendars,
        }

    def _graph(self, account, body):
        start = datetime.fromisoformat(body["startTime"]["dateTime"]).replace(tzinfo=UTC)
        end = datetime.fromisoformat(body["endTime"]["dateTime"]).replace(tzinfo=UTC)
        values = []
        for mailbox in body.get("schedules", []):
            if mailbox != account:
                values.append(
                    {
                        "scheduleId": mailbox,
                        "error": {"message": "No access to this schedule.", "responseCode": "ErrorAccessDenied"},
                    }
                )
                continue
            items = []
            for s, e, status in sorted(self.calendars.get((account, account), [])):
                for cs, ce in _clip([(s, e)], start, end):
                    items.append(
                        {
                            "isPrivate": False,
                            "status": status,
                            "subject": "Private",
                            "start": {"dateTime": cs.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
                            "end": {"dateTime": ce.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
                        }
                    )
            value = {"scheduleId": mailbox, "availabilityView": "", "scheduleItems": items}
            if mailbox in self.working_hours:
                value["workingHours"] = self.working_hours[mailbox]
            values.append(value)
        return 200, {"value": values}

    def _handler(self):
        fake = self

        class Handler(QuietHandler):
            def _answer(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                path = self.path.split("?", 1)[0]
                with fake.lock:
                    fake.requests.append(("POST", path, body, token))
                    failure = fake.failures.pop(0) if fake.failures else None
                if fake.latency:
                    time.sleep(fake.latency)
                if failure is not None:
                    return self._answer(*failure)
                account = fake.tokens.get(token)
                if account is None:
                    return self._answer(401, {"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}})
                if path == GOOGLE_PATH:
                    return self._answer(*fake._google(account, body))
                if path == f"{GRAPH_PREFIX}/me/calendar/getSchedule":
                    return self._answer(*fake._graph(account, body))
                return self._answer(404, {"error": {"code": "notFound", "message": path}})

        return Handler


def _as_dt(value):
    return _parse(value) if isinstance(value, str) else value.astimezone(UTC)


def _z(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
