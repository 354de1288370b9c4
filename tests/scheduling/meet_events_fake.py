"""Google Meet's lifecycle side as an httplib2 transport: the Meet REST API reads that events name (spaces,
conference records, participants and their sessions, recordings, transcripts) and the Workspace Events API
(subscriptions answered as long-running Operations), on top of FakeGoogle's Calendar and Meet listing."""

import base64
import datetime as dt
import itertools
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.utils import timezone
from google.auth import jwt as google_jwt

from integrations import google_http
from tests.messaging.mail.conftest import signing_key

from .fakes import FakeGoogle

WEBHOOK = "/webhooks/google-meet/"
AUDIENCE = "https://hub.example.com/webhooks/google-meet/"
SERVICE_ACCOUNT = "meet-push@hub-project.iam.gserviceaccount.com"
CERTS_URL = "https://certs.example.test/oauth2/v1/certs"
TOPIC = "projects/hub-project/topics/meet-events"
MEET_READONLY = "https://www.googleapis.com/auth/meetings.space.readonly"
SOURCE = "//workspaceevents.googleapis.com/subscriptions/sub-1"
CODE = "abc-mnop-xy1"  # the fake's meeting code for the first meeting it makes
SPACE = f"//meet.googleapis.com/spaces/sp-{CODE}"


@pytest.fixture(scope="module")
def meet_push_keys():
    return {"good": signing_key("kid-good"), "rogue": signing_key("kid-rogue")}


@pytest.fixture
def gmeet(settings, monkeypatch, meet_push_keys):
    """Google configured with Meet events (topic, push audience and account); Google answered at the transport."""
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-client-secret"
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "google_meet": {"requests": {"rate": 1000, "burst": 1000}}}
    settings.GOOGLE_MEET_EVENTS_TOPIC = TOPIC
    settings.GOOGLE_MEET_PUSH_AUDIENCE = AUDIENCE
    settings.GOOGLE_MEET_PUSH_SERVICE_ACCOUNT = SERVICE_ACCOUNT
    settings.GOOGLE_OIDC_CERTS_URL = CERTS_URL
    fake = FakeMeetEvents()
    monkeypatch.setattr(google_http, "OneSendHttp", fake)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, CERTS_URL, json={"kid-good": meet_push_keys["good"][1]})
        fake.http = rsps
        yield fake


@pytest.fixture
def records_conn(user, gmeet):
    """The user's Google connection with Meet records granted (meetings.space.readonly)."""
    from tests.integrations.factories import ConnectionFactory

    return ConnectionFactory(
        owner=user,
        provider="google_oauth",
        account="ada@example.com",
        capabilities=["meetings", "meeting_records"],
        scopes=["https://www.googleapis.com/auth/calendar.events", "openid", MEET_READONLY],
        access_token=gmeet.token,
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )


def token(signer, **claims):
    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": SERVICE_ACCOUNT,
        "email_verified": True,
        "sub": "1234",
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return google_jwt.encode(signer, payload).decode()


def delivery(ce_type, data, *, ce_id="ev-1", ce_time="2030-01-10T15:00:00Z", source=SOURCE, subject=SPACE):
    return {
        "message": {
            "attributes": {
                "ce-datacontenttype": "application/json",
                "ce-id": ce_id,
                "ce-source": source,
                "ce-specversion": "1.0",
                "ce-subject": subject,
                "ce-time": ce_time,
                "ce-type": f"google.workspace.meet.{ce_type}",
            },
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
            "messageId": f"pubsub-{ce_id}",
            "publishTime": ce_time,
        },
        "subscription": "projects/hub-project/subscriptions/meet-push",
    }


NOT_FOUND = {"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}


class FakeMeetEvents(FakeGoogle):
    def __init__(self):
        super().__init__()
        self.resources = {}  # Meet resource name -> its JSON (conferenceRecords/..., .../participants/..., ...)
        self.subscriptions = {}
        self.operations = {}
        self.pending_operations = 0  # how many create answers say done: false first
        self.already_exists = False  # the next create is 409 (a subscription for the space exists already)
        self.while_creating = None  # called before a create is answered (what happens while the call is out)
        self.while_deleting = None  # called with the name before a delete is answered
        self.refuse_reactivation = 0  # how many reactivations are refused (the cause of the suspension lasts)
        self.expire_time = "2030-01-17T15:00:00Z"
        self._subs = itertools.count(1)

    def space_of(self, code):
        return f"spaces/sp-{code}"

    # --- what tests arrange ----------------------------------------------------------------------

    def conference(self, code, rec="c1", start="2030-01-10T15:00:00Z", end=None):
        name = f"conferenceRecords/{rec}"
        self.resources[name] = {"name": name, "space": self.space_of(code), "startTime": start}
        if end:
            self.resources[name]["endTime"] = end
        return name

    def session(self, record, person="p1", session="s1", start="2030-01-10T15:01:00Z", end=None, who=None):
        participant = f"{record}/participants/{person}"
        self.resources[participant] = {
            "name": participant,
            **(who or {"signedinUser": {"user": "users/1234", "displayName": "Ana Lima"}}),
        }
        name = f"{participant}/participantSessions/{session}"
        self.resources[name] = {"name": name, "startTime": start, **({"endTime": end} if end else {})}
        return name

    def recording(self, record, rid="r1"):
        name = f"{record}/recordings/{rid}"
        self.resources[name] = {
            "name": name,
            "state": "FILE_GENERATED",
            "startTime": "2030-01-10T15:00:00Z",
            "endTime": "2030-01-10T15:40:00Z",
            "driveDestination": {"file": "1AbC", "exportUri": "https://drive.google.com/file/d/1AbC/view"},
        }
        return name

    def transcript(self, record, tid="t1"):
        name = f"{record}/transcripts/{tid}"
        self.resources[name] = {
            "name": name,
            "state": "FILE_GENERATED",
            "startTime": "2030-01-10T15:00:00Z",
            "endTime": "2030-01-10T15:40:00Z",
            "docsDestination": {"document": "1DoC", "exportUri": "https://docs.google.com/document/d/1DoC/view"},
        }
        return name

    # --- the transport ------------------------------------------------------------------------------

    def request(self, uri, method="GET", body=None, headers=None, redirections=5, connection_type=None):
        url = urlsplit(uri)
        if url.netloc not in ("workspaceevents.googleapis.com", "meet.googleapis.com"):
            return super().request(uri, method, body, headers, redirections, connection_type)
        path = url.path.removeprefix("/v2/").removeprefix("/v1/")
        by_space = path == "conferenceRecords" and "space.name" in parse_qs(url.query).get("filter", [""])[0]
        listing = (path == "conferenceRecords" and not by_space) or path.endswith(("/recordings", "/transcripts"))
        if url.netloc == "meet.googleapis.com" and listing:
            return super().request(uri, method, body, headers, redirections, connection_type)
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        data = json.loads(body) if body else {}
        self.requests.append({"method": method, "host": url.netloc, "path": url.path, "params": params, "body": data})
        if headers.get("authorization") != f"Bearer {self.token}":
            return self._answer(401, {"error": {"code": 401, "message": "Invalid Credentials"}})
        if self.fail_next:
            return self._answer(*self.fail_next.pop(0))
        if url.netloc == "meet.googleapis.com":
            if path.startswith("spaces/"):
                code = path.removeprefix("spaces/")
                return self._answer(200, {"name": self.space_of(code), "meetingCode": code})
            if by_space:
                space = params["filter"].split('"')[1]
                found = [r for n, r in self.resources.items() if n.count("/") == 1 and r.get("space") == space]
                return self._answer(200, {"conferenceRecords": found})
            for kind in ("participants", "participantSessions"):
                if path.endswith("/" + kind):
                    found = [r for n, r in self.resources.items() if n.rsplit("/", 2)[0] == path.rsplit("/", 1)[0]
                             and n.rsplit("/", 2)[1] == kind]  # fmt: skip
                    return self._answer(200, {kind: found})
            found = self.resources.get(path)
            return self._answer(200, found) if found else self._answer(404, NOT_FOUND)
        return self._events(method, path, params, data)

    def _operation(self, subscription, pending=False):
        name = f"operations/op-{len(self.operations) + 1}"
        done = {"name": name, "done": True, "response": {"@type": "type.googleapis.com/x", **subscription}}
        self.operations[name] = done
        return {"name": name, "done": False} if pending else done

    def suspend(self, name, reason):
        """Google suspends the subscription; the Subscription as its lifecycle event carries it."""
        self.subscriptions[name].update(state="SUSPENDED", suspensionReason=reason)
        return dict(self.subscriptions[name])

    def _events(self, method, path, params, data):
        if path == "subscriptions" and method == "POST":
            if self.while_creating is not None:
                self.while_creating()
            if self.already_exists:
                self.already_exists = False
                return self._answer(409, {"error": {"code": 409, "message": "exists", "status": "ALREADY_EXISTS"}})
            name = f"subscriptions/sub-{next(self._subs)}"
            sub = {**data, "name": name, "state": "ACTIVE", "expireTime": self.expire_time}
            self.subscriptions[name] = sub
            pending = self.pending_operations > 0
            self.pending_operations -= 1
            return self._answer(200, self._operation(sub, pending))
        if path == "subscriptions" and method == "GET":
            target = params.get("filter", "").split('target_resource="')[-1].rstrip('"')
            found = [s for s in self.subscriptions.values() if s["targetResource"] == target]
            return self._answer(200, {"subscriptions": found} if found else {})
        if path.startswith("operations/"):
            return self._answer(200, self.operations[path])
        if path.endswith(":reactivate") and method == "POST":
            sub = self.subscriptions.get(path.removesuffix(":reactivate"))
            if sub is None:
                return self._answer(404, NOT_FOUND)
            if sub.get("state") != "SUSPENDED" or self.refuse_reactivation:
                self.refuse_reactivation = max(0, self.refuse_reactivation - 1)
                refused = {
                    "code": 400,
                    "message": "The subscription cannot be reactivated.",
                    "status": "FAILED_PRECONDITION",
                }
                return self._answer(400, {"error": refused})
            sub["state"] = "ACTIVE"
            sub.pop("suspensionReason", None)
            return self._answer(200, self._operation(sub))
        sub = self.subscriptions.get(path)
        if sub is None:
            return self._answer(404, NOT_FOUND)
        if method == "GET":
            return self._answer(200, sub)
        if method == "PATCH":
            sub["expireTime"] = self.expire_time
            sub["renewedWith"] = {"updateMask": params.get("updateMask"), **data}
            return self._answer(200, self._operation(sub))
        if method == "DELETE":
            if self.while_deleting is not None:
                self.while_deleting(path)
            self.subscriptions.pop(path)
            return self._answer(200, {"name": "operations/deleted", "done": True, "response": {}})
        return self._answer(405, {"error": {"code": 405, "message": "no"}})
