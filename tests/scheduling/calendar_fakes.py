"""Google Calendar v3 (httplib2 transport) and Graph calendars (respx) with their real shapes and change logs.

`FakeGoogleCalendar` keeps calendars, events and a change log: events.list with
a syncToken returns what changed after it (deleted events as `cancelled`), a
token in `expired` answers 410 Gone, `events.instances(originalStart=)` finds
an occurrence by its planned start (ids `<series>_<YYYYMMDDTHHMMSSZ>` as Google
makes them), and writes to an occurrence's id make an exception. `edit()` and
`remove()` are what a person does in Google Calendar's own UI.
"""

import copy
import datetime as dt
import itertools
import json
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import httplib2
from dateutil import rrule

GRAPH = "https://graph.microsoft.test/v1.0"


def _utc_stamp(moment):
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


class FakeGoogleCalendar:
    token = "ya29.calendar-token"

    def __init__(self):
        self.calendars = {
            "ada@example.com": {"summary": "Ada", "timeZone": "Europe/Berlin", "primary": True, "accessRole": "owner"},
            "team@group.calendar.google.com": {
                "summary": "Team",
                "timeZone": "America/New_York",
                "accessRole": "writer",
            },
        }
        self.events = {cid: {} for cid in self.calendars}
        self.log = []  # (seq, calendar id, event id)
        self.expired = set()
        self.requests = []
        self.fail_next = []
        self.channels = {}
        self.stopped = []
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self.page_size = None

    def __call__(self, *args, **kwargs):
        return self

    # --- what a person does in Google's own UI ----------------------------------------------------

    def _touch(self, cid, event):
        seq = next(self._seq)
        event["etag"] = f'"{3300000000000 + seq}"'
        event["updated"] = (
            (dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seq)).isoformat().replace("+00:00", "Z")
        )
        self.log.append((seq, cid, event["id"]))

    def edit(self, cid, eid, **fields):
        self.events[cid][eid].update(copy.deepcopy(fields))
        self._touch(cid, self.events[cid][eid])

    def remove(self, cid, eid):
        event = self.events[cid][eid]
        event["status"] = "cancelled"
        self._touch(cid, event)

    def add(self, cid, **fields):
        eid = f"ev{next(self._ids)}"
        event = {"kind": "calendar#event", "id": eid, "status": "confirmed", "iCalUID": f"{eid}@google.com", **fields}
        self.events[cid][eid] = event
        self._touch(cid, event)
        return eid

    # --- transport ----------------------------------------------------------------------------------

    def request(self, uri, method="GET", body=None, headers=None, redirections=5, connection_type=None):
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        url = urlsplit(uri)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        data = json.loads(body) if body else {}
        self.requests.append({"method": method, "path": unquote(url.path), "params": params, "body": data})
        if headers.get("authorization") != f"Bearer {self.token}":
            return self._answer(401, {"error": {"code": 401, "message": "Invalid Credentials"}})
        if self.fail_next:
            status, payload, extra = self.fail_next.pop(0)
            return self._answer(status, payload, extra)
        parts = [unquote(p) for p in url.path.removeprefix("/calendar/v3/").strip("/").split("/")]
        if parts == ["users", "me", "calendarList"]:
            items = [{"id": cid, **c} for cid, c in self.calendars.items()]
            return self._answer(200, {"kind": "calendar#calendarList", "items": items})
        if parts == ["channels", "stop"]:
            self.stopped.append(data)
            self.channels.pop(data.get("id"), None)
            return self._answer(204, None)
        if parts[0] != "calendars" or parts[1] not in self.events or parts[2] != "events":
            return self._not_found()
        cid, rest = parts[1], parts[3:]
        if rest == ["watch"]:
            return self._watch(cid, data)
        if not rest:
            if method == "POST":
                return self._insert(cid, data)
            return self._list(cid, params)
        eid = rest[0]
        if rest[1:] == ["instances"]:
            return self._instances(cid, eid, params)
        return self._one(cid, eid, method, data)

    def _watch(self, cid, data):
        resource = f"res-{len(self.channels) + 1}"
        expires = int((dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(data["params"]["ttl"]))).timestamp() * 1000)
        self.channels[data["id"]] = {**data, "calendar": cid, "resourceId": resource, "expiration": expires}
        return self._answer(
            200,
            {
                "kind": "api#channel",
                "id": data["id"],
                "resourceId": resource,
                "resourceUri": "...",
                "expiration": str(expires),
            },
        )

    def _insert(self, cid, data):
        eid = f"ev{next(self._ids)}"
        event = {"kind": "calendar#event", "id": eid, "status": "confirmed", "iCalUID": f"{eid}@google.com"}
        event["htmlLink"] = f"https://www.google.com/calendar/event?eid={eid}"
        self._merge(event, data)
        self.events[cid][eid] = event
        self._touch(cid, event)
        return self._answer(200, event)

    @staticmethod
    def _merge(event, data):
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(event.get(key), dict):
                merged = {**event[key], **value}
                event[key] = {k: v for k, v in merged.items() if v is not None}
            elif isinstance(value, dict):
                event[key] = {k: v for k, v in value.items() if v is not None}
            else:
                event[key] = value

    def _list(self, cid, params):
        token = params.get("syncToken")
        if token in self.expired:
            return self._answer(
                410,
                {"error": {"code": 410, "message": "Sync token is no longer valid, a full sync is required.",
                           "errors": [{"domain": "calendar", "reason": "fullSyncRequired"}]}},
            )  # fmt: skip
        if token:
            after = int(token.removeprefix("tok-"))
            ids = list(dict.fromkeys(eid for seq, c, eid in self.log if c == cid and seq > after))
            items = [self.events[cid][eid] for eid in ids]
        else:
            items = [e for e in self.events[cid].values() if e["status"] != "cancelled"]
        size = self.page_size or int(params.get("maxResults", 250))
        first = int(params.get("pageToken", "0"))
        page = items[first : first + size]
        answer = {"kind": "calendar#events", "items": copy.deepcopy(page)}
        if first + size < len(items):
            answer["nextPageToken"] = str(first + size)
        else:
            answer["nextSyncToken"] = f"tok-{self.log[-1][0] if self.log else 0}"
        return self._answer(200, answer)

    def _occurrence(self, cid, series_id, original):
        """The computed occurrence of a series planned at `original` (aware UTC), or None."""
        series = self.events[cid].get(series_id)
        if series is None or not series.get("recurrence"):
            return None
        zone = ZoneInfo(series["start"]["timeZone"])
        start = dt.datetime.fromisoformat(series["start"]["dateTime"]).astimezone(zone)
        end = dt.datetime.fromisoformat(series["end"]["dateTime"]).astimezone(zone)
        rules = rrule.rrulestr(
            "\n".join(line for line in series["recurrence"] if line.startswith("RRULE")), dtstart=start, forceset=True
        )
        if original.astimezone(zone) not in list(
            rules.between(original - dt.timedelta(seconds=1), original + dt.timedelta(seconds=1))
        ):
            return None
        local = original.astimezone(zone)
        return {
            "kind": "calendar#event",
            "id": f"{series_id}_{_utc_stamp(original)}",
            "status": "confirmed",
            "summary": series.get("summary"),
            "start": {"dateTime": local.isoformat(), "timeZone": zone.key},
            "end": {"dateTime": (local + (end - start)).isoformat(), "timeZone": zone.key},
            "recurringEventId": series_id,
            "originalStartTime": {"dateTime": local.isoformat(), "timeZone": zone.key},
            "iCalUID": series.get("iCalUID"),
            "etag": series.get("etag"),
        }

    def _instances(self, cid, eid, params):
        original = dt.datetime.fromisoformat(params["originalStart"].replace("Z", "+00:00"))
        own = self.events[cid].get(f"{eid}_{_utc_stamp(original)}")
        found = own or self._occurrence(cid, eid, original)
        return self._answer(200, {"kind": "calendar#events", "items": [found] if found else []})

    def _one(self, cid, eid, method, data):
        event = self.events[cid].get(eid)
        if event is None and "_" in eid:
            series_id, stamp = eid.rsplit("_", 1)
            original = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
            event = self._occurrence(cid, series_id, original)
            if event is not None and method in ("PATCH", "DELETE"):
                self.events[cid][eid] = event
        if event is None or (event["status"] == "cancelled" and method != "GET"):
            return self._answer(
                410 if event else 404,
                {"error": {"code": 404, "message": "Not Found", "errors": [{"reason": "notFound"}]}},
            )
        if method == "GET":
            return self._answer(200, event)
        if method == "PATCH":
            self._merge(event, data)
            self._touch(cid, event)
            return self._answer(200, event)
        if method == "DELETE":
            event["status"] = "cancelled"
            self._touch(cid, event)
            return self._answer(204, None)
        return self._answer(405, {"error": {"code": 405, "message": "no"}})

    def _not_found(self):
        return self._answer(404, {"error": {"code": 404, "message": "Not Found", "errors": [{"reason": "notFound"}]}})

    @staticmethod
    def _answer(status, payload, extra=None):
        response = httplib2.Response({"status": str(status), "content-type": "application/json", **(extra or {})})
        return response, (json.dumps(payload).encode() if payload is not None else b"")
