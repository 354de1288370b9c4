"""Google Calendar v3 (httplib2 transport) and Graph calendars (respx) with their real shapes and change logs.

`FakeGoogleCalendar` keeps calendars, events and a change log: events.list with
a syncToken returns what changed after it (deleted events as `cancelled`), a
token in `expired` answers 410 Gone, `events.instances(originalStart=)` finds
an occurrence by its planned start (ids `<series>_<YYYYMMDDTHHMMSSZ>` as Google
makes them), and writes to an occurrence's id make an exception. An insert may
choose its id (base32hex, 5-1024 characters); one already taken, even by a
deleted event, is 409 duplicate. `edit()` and `remove()` are what a person does
in Google Calendar's own UI.
"""

import copy
import datetime as dt
import itertools
import json
import re
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import httplib2
import httpx
from dateutil import rrule

from .graph_fake_base import GraphFakeBase

GRAPH = "https://graph.microsoft.test/v1.0"
USER_ID = "5f0c2a7e-6b1d-4e8a-9c3f-2d4b6a8e0c1f"  # the signed-in user's object id, as Graph names it in resources


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
        self.watch_leaves_out = ()  # keys a watch answer leaves out (expiration and resourceId are optional fields)
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
        answer = {
            "kind": "api#channel",
            "id": data["id"],
            "resourceId": resource,
            "resourceUri": "...",
            "expiration": str(expires),
        }
        return self._answer(200, {k: v for k, v in answer.items() if k not in self.watch_leaves_out})

    def _insert(self, cid, data):
        eid = data.get("id") or f"ev{next(self._ids)}"
        if data.get("id") and not re.fullmatch(r"[0-9a-v]{5,1024}", eid):
            return self._answer(400, {"error": {"code": 400, "message": "Invalid resource id value."}})
        if eid in self.events[cid]:
            # A client-chosen id is unique per calendar, a deleted event's too.
            message = "The requested identifier already exists."
            return self._answer(
                409,
                {"error": {"code": 409, "message": message, "errors": [{"reason": "duplicate", "message": message}]}},
            )
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


GRAPH_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class FakeGraphCalendar(GraphFakeBase):
    """Graph calendars on respx: events with Windows time zones, series with occurrences, calendarView delta.

    Occurrences of a series are computed from its pattern (daily/weekly here, an every-n-weeks one counting weeks
    from its firstDayOfWeek, sunday by default) as Graph lists them: ids
    `<series>-occ-<YYYYMMDD>`, `type: occurrence`, `seriesMasterId`, `originalStart` (UTC). Writing to an
    occurrence makes it an exception; deleting it removes it from the series and lists it in the master's
    `cancelledOccurrences`, which a GET answers only when `$select` names it (and a `$select` answers only
    what it names). The delta keeps a change log:
    a deltatoken returns what changed after it (`@removed` for deletions); one in `expired` is 410 Gone.

    Creates under a `transactionId` and lost answers (`lose_next`) are played as GraphFakeBase says.
    """

    token = "eyJ-graph-calendar-token"

    def __init__(self):
        super().__init__()
        self.calendars = {"AAMkCal1": {"name": "Calendar", "isDefaultCalendar": True, "canEdit": True}}
        self.events = {}
        self.deleted_occurrences = set()
        self.log = []
        self.expired = set()
        self.requests = []
        self.subscriptions = {}
        self.fail_next = []
        self.mailbox_zone = "Pacific Standard Time"
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)

    def routes(self, router):
        router.route(url__startswith=GRAPH).mock(side_effect=self._handle)

    def _change(self, eid, removed=False):
        self.log.append((next(self._seq), eid, removed))

    # --- what a person does in Outlook --------------------------------------------------------------

    def add(self, calendar="AAMkCal1", **fields):
        eid = f"AAMkEv{next(self._ids)}="
        self.events[eid] = {"id": eid, "calendar": calendar, "type": "singleInstance", **fields}
        self._etag(eid)
        return eid

    def _etag(self, eid):
        n = next(self._ids)
        self.events[eid]["@odata.etag"] = f'W/"DwAAABYAAA{n}"'
        self.events[eid]["lastModifiedDateTime"] = "2026-01-01T00:00:00Z"
        self._change(eid)

    def remove(self, eid):
        """Delete an event; a series goes with its occurrences, which are what the calendar view's delta reports
        removed (a series master is never part of a calendar view)."""
        event = self.events[eid]
        if event["type"] == "seriesMaster":
            for occurrence in self._series_occurrences(event):
                self.events.pop(occurrence["id"], None)
                self._change(occurrence["id"], removed=True)
            self.events.pop(eid)
            return
        self.events.pop(eid)
        self._change(eid, removed=True)

    def cancel_occurrence(self, series_id, day):
        """Delete one occurrence of a series (planned on `day`, local): Graph lists it in the master's
        cancelledOccurrences from then on, and the delta reports the occurrence as removed."""
        oid = f"{series_id}-occ-{day:%Y%m%d}"
        self.deleted_occurrences.add(oid)
        self.events.pop(oid, None)
        self._change(oid, removed=True)

    # --- transport --------------------------------------------------------------------------------------

    def _answer_to(self, request):
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}})
        if self.fail_next:
            status, body, headers = self.fail_next.pop(0)
            return httpx.Response(status, json=body, headers=headers)
        parts = [unquote(p) for p in request.url.path.removeprefix("/v1.0").strip("/").split("/")]
        body = json.loads(request.content) if request.content else {}
        params = dict(request.url.params)
        if parts == ["me", "calendars"]:
            return httpx.Response(200, json={"value": [{"id": k, **v} for k, v in self.calendars.items()]})
        if parts == ["me", "mailboxSettings", "timeZone"]:
            return httpx.Response(200, json={"value": self.mailbox_zone})
        if parts[:1] == ["subscriptions"]:
            return self._subscriptions(request.method, parts[1:], body)
        if parts[:2] == ["me", "calendars"] and parts[3:] == ["events"] and request.method == "POST":
            return self._create(parts[2], body)
        if parts[:2] == ["me", "calendars"] and parts[3:] == ["calendarView", "delta"]:
            return self._delta(parts[2], params)
        if parts[:2] == ["me", "events"] and len(parts) >= 3:
            return self._event(request.method, parts[2], parts[3:], body, params)
        return httpx.Response(404, json={"error": {"code": "NotFound", "message": "/".join(parts)}})

    def _create(self, calendar, body):
        made = self._made_before(body, self._public)
        if made is not None:
            return made
        eid = f"AAMkEv{next(self._ids)}="
        self._remember(body, eid)
        event = {
            "id": eid,
            "calendar": calendar,
            "type": "seriesMaster" if body.get("recurrence") else "singleInstance",
            "iCalUId": f"040000008200E{eid}",
            "webLink": f"https://outlook.office365.com/owa/?itemid={eid}",
            "originalStartTimeZone": (body.get("start") or {}).get("timeZone"),
            "originalEndTimeZone": (body.get("end") or {}).get("timeZone"),
            **body,
        }
        self.events[eid] = event
        self._etag(eid)
        return httpx.Response(201, json=self._public(event))

    @staticmethod
    def _public(event):
        return {k: v for k, v in event.items() if k != "calendar"}

    def _selected(self, event, params):
        """A GET of one event: with $select only what it names (id and etag always), and a series master's
        cancelledOccurrences ("OID.{master id}.{yyyy-mm-dd}") only when named, as Graph answers."""
        public = self._public(event)
        select = params.get("$select")
        if not select:
            return public
        if event.get("type") == "seriesMaster":
            prefix = f"{event['id']}-occ-"
            days = sorted(oid.removeprefix(prefix) for oid in self.deleted_occurrences if oid.startswith(prefix))
            public["cancelledOccurrences"] = [f"OID.{event['id']}.{d[:4]}-{d[4:6]}-{d[6:]}" for d in days]
        names = {*select.split(","), "id", "@odata.etag"}
        return {k: v for k, v in public.items() if k in names}

    def _series_occurrences(self, master):
        pattern, rng = master["recurrence"]["pattern"], master["recurrence"]["range"]
        from tzlocal.windows_tz import win_tz

        name = rng.get("recurrenceTimeZone") or "UTC"
        zone = ZoneInfo(win_tz.get(name, name))
        local = dt.datetime.fromisoformat(master["start"]["dateTime"][:19]).replace(tzinfo=zone)
        length = dt.datetime.fromisoformat(master["end"]["dateTime"][:19]) - dt.datetime.fromisoformat(
            master["start"]["dateTime"][:19]
        )
        kwargs = {"interval": pattern.get("interval", 1), "dtstart": local}
        if rng["type"] == "numbered":
            kwargs["count"] = rng["numberOfOccurrences"]
        elif rng["type"] == "endDate":
            kwargs["until"] = dt.datetime.fromisoformat(rng["endDate"] + "T23:59:59").replace(tzinfo=zone)
        else:
            kwargs["until"] = local + dt.timedelta(days=800)
        if pattern["type"] == "weekly":
            days = [rrule.weekday(GRAPH_DAYS.index(d)) for d in pattern["daysOfWeek"]]
            # Graph counts the weeks of an every-n-weeks series from firstDayOfWeek (sunday unless named).
            week_start = GRAPH_DAYS.index(pattern.get("firstDayOfWeek") or "sunday")
            starts = rrule.rrule(rrule.WEEKLY, byweekday=days, wkst=week_start, **kwargs)
        elif pattern["type"] == "daily":
            starts = rrule.rrule(rrule.DAILY, **kwargs)
        else:
            raise NotImplementedError(pattern["type"])
        out = []
        for start in starts:
            oid = f"{master['id']}-occ-{start:%Y%m%d}"
            if oid in self.deleted_occurrences:
                continue
            own = self.events.get(oid)
            if own is not None:
                out.append(own)
                continue
            out.append(
                {
                    "id": oid,
                    "type": "occurrence",
                    "seriesMasterId": master["id"],
                    "subject": master.get("subject"),
                    "start": {
                        "dateTime": start.strftime("%Y-%m-%dT%H:%M:%S.0000000"),
                        "timeZone": master["start"]["timeZone"],
                    },
                    "end": {
                        "dateTime": (start + length).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
                        "timeZone": master["start"]["timeZone"],
                    },
                    "originalStart": start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "originalStartTimeZone": master.get("originalStartTimeZone"),
                    "isAllDay": master.get("isAllDay", False),
                    "@odata.etag": master["@odata.etag"],
                }
            )
        return out

    def _find(self, eid):
        if eid in self.events:
            return self.events[eid]
        if "-occ-" in eid and eid not in self.deleted_occurrences:
            master = self.events.get(eid.split("-occ-")[0])
            if master is not None:
                return next((o for o in self._series_occurrences(master) if o["id"] == eid), None)
        return None

    def _event(self, method, eid, rest, body, params):
        event = self._find(eid)
        if event is None:
            return httpx.Response(404, json={"error": {"code": "ErrorItemNotFound", "message": "not found"}})
        if rest == ["instances"]:
            lo = dt.datetime.fromisoformat(params["startDateTime"].replace("Z", "+00:00"))
            hi = dt.datetime.fromisoformat(params["endDateTime"].replace("Z", "+00:00"))
            found = [
                o
                for o in self._series_occurrences(event)
                if lo <= dt.datetime.fromisoformat(o["originalStart"].replace("Z", "+00:00")) < hi
            ]
            return httpx.Response(200, json={"value": found})
        if rest:
            return httpx.Response(400, json={"error": {"code": "BadRequest", "message": "/".join(rest)}})
        if method == "GET":
            return httpx.Response(200, json=self._selected(event, params))
        if method == "PATCH":
            if event["id"] not in self.events:  # an occurrence becomes an exception
                event = {**event, "type": "exception", "calendar": self.events[event["seriesMasterId"]]["calendar"]}
                self.events[event["id"]] = event
            event.update(body)
            self._etag(event["id"])
            return httpx.Response(200, json=self._public(event))
        if method == "DELETE":
            if "-occ-" in eid:
                series_id, day = eid.split("-occ-")
                self.cancel_occurrence(series_id, dt.datetime.strptime(day, "%Y%m%d").date())
            else:
                self.remove(eid)
            return httpx.Response(204)
        return httpx.Response(405, json={"error": {"code": "MethodNotAllowed", "message": ""}})

    def _instances_of(self, calendar):
        out = []
        for event in list(self.events.values()):
            if event.get("calendar") != calendar or event["type"] == "exception":
                continue
            if event["type"] == "seriesMaster":
                out += self._series_occurrences(event)
            else:
                out.append(event)
        return out

    @staticmethod
    def _start(event):
        from tzlocal.windows_tz import win_tz

        name = event["start"].get("timeZone") or "UTC"
        local = dt.datetime.fromisoformat(event["start"]["dateTime"][:19])
        return local.replace(tzinfo=ZoneInfo(win_tz.get(name, name)))

    def _delta(self, calendar, params):
        token = params.get("$deltatoken")
        if token in self.expired:
            return httpx.Response(
                410, json={"error": {"code": "SyncStateNotFound", "message": "The sync state is gone."}}
            )
        last = self.log[-1][0] if self.log else 0
        if token is None:
            lo = dt.datetime.fromisoformat(params["startDateTime"].replace("Z", "+00:00"))
            hi = dt.datetime.fromisoformat(params["endDateTime"].replace("Z", "+00:00"))
            value = [self._public(e) for e in self._instances_of(calendar) if lo <= self._start(e) < hi]
        else:
            value, instances = [], {o["id"]: o for o in self._instances_of(calendar)}
            for _, eid, removed in [entry for entry in self.log if entry[0] > int(token)]:
                if removed:
                    value.append({"id": eid, "@removed": {"reason": "deleted"}})
                elif eid in self.events and self.events[eid]["type"] == "seriesMaster":
                    value += [self._public(o) for o in self._series_occurrences(self.events[eid])]
                elif eid in instances:
                    value.append(self._public(instances[eid]))
        link = f"{GRAPH}/me/calendars/{calendar}/calendarView/delta?$deltatoken={last}"
        return httpx.Response(200, json={"value": value, "@odata.deltaLink": link})

    def _subscriptions(self, method, rest, body):
        if method == "GET" and not rest:
            # This user's, without the clientState each was made with (null), a "/me/..." resource named by the
            # user's id as Graph lists it.
            value = [
                {**s, "clientState": None, "resource": re.sub(r"^/?me/", f"users/{USER_ID}/", s.get("resource", ""))}
                for s in self.subscriptions.values()
            ]
            return httpx.Response(200, json={"value": value})
        if method == "POST" and not rest:
            sid = f"sub-{next(self._ids)}"
            self.subscriptions[sid] = {"id": sid, **body}
            return httpx.Response(201, json=self.subscriptions[sid])
        sid = rest[0] if rest else ""
        if sid not in self.subscriptions:
            return httpx.Response(404, json={"error": {"code": "ResourceNotFound", "message": "no subscription"}})
        if method == "PATCH":
            self.subscriptions[sid].update(body)
            return httpx.Response(200, json=self.subscriptions[sid])
        if method == "DELETE":
            del self.subscriptions[sid]
            return httpx.Response(204)
        return httpx.Response(405, json={"error": {"code": "MethodNotAllowed", "message": ""}})
