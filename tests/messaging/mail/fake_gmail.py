"""A local Gmail API for google-api-python-client (GMAIL_API_BASE points at it).

Stdlib HTTP/1.1 server on 127.0.0.1 (Nagle off), speaking the Gmail REST
paths the hub uses, including the multipart batch endpoint. Every HTTP request
is recorded, so tests count what reached "Gmail". It plays Gmail's per-user
quota: a token bucket of `rate` units per second with bursts up to `burst`,
each method costing its documented units; over it, 429 rateLimitExceeded.

A sent message is kept with the SENT label and its Message-ID header, so
messages.list finds it by `q=rfc822msgid:...`. `send_faults` plays what a
timeout hides: each messages.send takes the next fault, if any ("accept_then_hang":
Gmail keeps the message and answers only after `hang` seconds, when the client
has given up; "hang": the same without keeping it; "accept_then_drop": kept,
then the connection is closed without an answer).

With `rotate_attachment_ids`, every read of a message hands out new attachment ids for its files, and only
the latest id of each part downloads it (an older one is 400 "Invalid attachment token", invalidArgument):
Gmail's attachment ids are tokens that change between reads of the same message and lapse.
"""

import base64
import copy
import email
import json
import random
import re
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.local_http import QuietHandler, serve, stop

PORTS = range(18400, 18500)
COST = {
    "list": 5,
    "get": 5,
    "send": 100,
    "history": 2,
    "profile": 1,
    "watch": 100,
    "modify": 5,
    "draft": 10,
    "label": 5,
}


UNAUTHENTICATED = {
    "error": {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
        "other valid authentication credential.",
        "status": "UNAUTHENTICATED",
    }
}
UNAUTHENTICATED_HEADERS = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'}


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def make_message(n, *, labels=("INBOX", "UNREAD"), thread=None, attachment=False):
    mid = f"m{n:05d}"
    headers = [
        {"name": "From", "value": f"Sender {n} <sender{n}@example.com>"},
        {"name": "To", "value": "ada@example.com"},
        {"name": "Subject", "value": f"Message {n}"},
        {"name": "Date", "value": "Tue, 01 Dec 2026 10:00:00 +0100"},
        {"name": "Message-ID", "value": f"<{mid}@mail.example.com>"},
    ]
    parts = [{"partId": "0", "mimeType": "text/plain", "body": {"size": 5, "data": b64url(f"Body {n}".encode())}}]
    if attachment:
        parts.append(
            {
                "partId": "1",
                "mimeType": "application/pdf",
                "filename": "report.pdf",
                "body": {"attachmentId": f"att-{mid}", "size": 9},
            }
        )
    return {
        "id": mid,
        "threadId": thread or f"t{n:05d}",
        "labelIds": list(labels),
        "snippet": f"Snippet {n}",
        "historyId": str(1000 + n),
        "internalDate": str(1796115600000 + n * 1000),
        "payload": {"mimeType": "multipart/mixed", "headers": headers, "parts": parts},
    }


def metadata_only(message, wanted):
    """messages.get with format=metadata, as Gmail answers it: "only email message ID, labels, and email
    headers" (those named in metadataHeaders), no parts, so nothing about attachments."""
    wanted = {w.lower() for w in ([wanted] if isinstance(wanted, str) else wanted or [])}
    payload = message.get("payload") or {}
    headers = [h for h in payload.get("headers", []) if not wanted or h["name"].lower() in wanted]
    kept = {k: v for k, v in message.items() if k != "payload"}
    return {**kept, "payload": {"mimeType": payload.get("mimeType", ""), "headers": headers}}


class FakeGmail:
    def __init__(self, *, rate=250.0, burst=500.0):
        self.messages = {}
        self.order = []
        self.labels = {"INBOX": {"id": "INBOX", "name": "INBOX", "type": "system"}}
        self.drafts = {}
        self.sent = []  # the raw MIME of every message Gmail kept for sending
        self.sent_messages = {}  # id -> message resource (SENT), as messages.get would answer it
        self.send_attempts = []  # the Message-ID of every messages.send that reached Gmail
        self.send_faults = []
        self.hang = 1.5
        self.history = []  # (historyId, record)
        self.history_id = 5000
        self.watch = None  # the body of the last users.watch
        self.oldest_history = 4000
        self.requests = []  # (method, path)
        self.batch_parts = []
        self.batch_queries = []
        self.uploads = {}  # session id -> {"method", "path", "meta", "total", "data", "chunks"}
        self.upload_log = []  # (path, [chunk sizes]) of completed resumable uploads
        self.rejected = 0
        self.rotate_attachment_ids = False
        self.attachment_reads = 0
        self.attachment_tokens = {}  # attachment id -> (message id, partId), the live ones
        # Access tokens Google no longer accepts before their expiry (revoked, rotated): 401 UNAUTHENTICATED.
        self.refused_tokens = set()
        self.rate, self.burst = rate, burst
        self.buckets = {}
        self.lock = threading.Lock()
        self.server = self._bind()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve(self.server)

    def _bind(self):
        for port in random.sample(PORTS, len(PORTS)):
            try:
                return ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
            except OSError:
                continue
        raise RuntimeError("no free port in 18400-18499")

    def stop(self):
        stop(self.server)

    def add(self, message):
        self.messages[message["id"]] = message
        self.order.insert(0, message["id"])

    def pushes(self, labels):
        """Whether Gmail publishes a change to a message with `labels` to the topic of the last users.watch: every
        change without labelIds; with them, INCLUDE (the default) one under any of them, EXCLUDE one under none."""
        if self.watch is None:
            return False
        wanted = set(self.watch.get("labelIds") or [])
        if not wanted:
            return True
        if self.watch.get("labelFilterBehavior", "INCLUDE").upper() == "EXCLUDE":
            return not wanted & set(labels)
        return bool(wanted & set(labels))

    def http_requests(self):
        return [r for r in self.requests]

    # Gmail's quota, played: a token bucket per user (bearer token).
    def spend(self, user, units):
        if self.rate is None:
            return True
        with self.lock:
            now = time.time()
            tokens, ts = self.buckets.get(user, (self.burst, now))
            tokens = min(self.burst, tokens + (now - ts) * self.rate)
            if tokens < units:
                self.buckets[user] = (tokens, now)
                self.rejected += 1
                return False
            self.buckets[user] = (tokens - units, now)
            return True

    # --- routes: (status, body) --------------------------------------------------------
    def route(self, method, path, query, body, user):
        q = {k: v[0] if len(v) == 1 else v for k, v in query.items()}
        m = re.fullmatch(r"/gmail/v1/users/me/(.*)", path)
        if not m:
            return 404, {"error": {"code": 404, "message": "no route"}}
        rest = m.group(1)
        if rest == "messages" and method == "GET":
            cost, result = COST["list"], self._list(q)
        elif rest == "messages/send" and method == "POST":
            if not self.spend(user, COST["send"]):  # refused before anything is kept, as Gmail does
                return self._rate_limited()
            cost, result = 0, self._send(body)
        elif rest == "profile":
            cost, result = (
                COST["profile"],
                (200, {"emailAddress": "ada@example.com", "historyId": str(self.history_id)}),
            )
        elif rest == "history":
            cost, result = COST["history"], self._history(q)
        elif rest == "watch" and method == "POST":
            self.watch = body
            cost, result = (
                COST["watch"],
                (200, {"historyId": str(self.history_id), "expiration": str(int((time.time() + 7 * 86400) * 1000))}),
            )
        elif rest == "stop" and method == "POST":
            cost, result = 50, (204, None)
        elif (mm := re.fullmatch(r"messages/([^/]+)/attachments/([^/]+)", rest)) and method == "GET":
            cost, result = COST["get"], self._attachment(mm.group(1), mm.group(2))
        elif (mm := re.fullmatch(r"messages/([^/]+)/modify", rest)) and method == "POST":
            cost, result = COST["modify"], self._modify(mm.group(1), body)
        elif (mm := re.fullmatch(r"messages/([^/]+)/trash", rest)) and method == "POST":
            cost, result = (
                COST["modify"],
                self._modify(mm.group(1), {"addLabelIds": ["TRASH"], "removeLabelIds": ["INBOX"]}),
            )
        elif (mm := re.fullmatch(r"messages/([^/]+)", rest)) and method == "GET":
            msg = self._read(self.messages.get(mm.group(1)))
            if msg and q.get("format") == "metadata":
                msg = metadata_only(msg, q.get("metadataHeaders"))
            cost, result = (
                COST["get"],
                (200, msg) if msg else (404, {"error": {"code": 404, "message": "Requested entity was not found."}}),
            )
        elif (mm := re.fullmatch(r"threads/([^/]+)", rest)) and method == "GET":
            msgs = [self._read(m) for m in self.messages.values() if m["threadId"] == mm.group(1)]
            cost, result = 10, (200, {"id": mm.group(1), "messages": msgs}) if msgs else (404, {"error": {"code": 404}})
        elif rest == "labels" and method == "GET":
            cost, result = 1, (200, {"labels": list(self.labels.values())})
        elif rest == "labels" and method == "POST":
            label = {"id": f"Label_{len(self.labels)}", "name": body["name"], "type": "user"}
            self.labels[label["id"]] = label
            cost, result = COST["label"], (200, label)
        elif (mm := re.fullmatch(r"labels/([^/]+)", rest)) and method == "PATCH":
            self.labels[mm.group(1)]["name"] = body["name"]
            cost, result = COST["label"], (200, self.labels[mm.group(1)])
        elif (mm := re.fullmatch(r"labels/([^/]+)", rest)) and method == "DELETE":
            self.labels.pop(mm.group(1), None)
            cost, result = COST["label"], (204, None)
        elif rest == "drafts" and method == "POST":
            did = f"r{len(self.drafts) + 1}"
            self.drafts[did] = body["message"]
            cost, result = (
                COST["draft"],
                (200, {"id": did, "message": {"id": f"dm{did}", "threadId": body["message"].get("threadId", "tnew")}}),
            )
        elif rest == "drafts" and method == "GET":
            cost, result = COST["get"], (200, {"drafts": [{"id": d, "message": {"id": f"dm{d}"}} for d in self.drafts]})
        elif (mm := re.fullmatch(r"drafts/([^/]+)", rest)) and method == "GET":
            cost, result = (
                COST["get"],
                (200, {"id": mm.group(1), "message": {**make_message(1), "id": f"dm{mm.group(1)}"}}),
            )
        elif (mm := re.fullmatch(r"drafts/([^/]+)", rest)) and method == "PUT":
            self.drafts[mm.group(1)] = body["message"]
            cost, result = 15, (200, {"id": mm.group(1), "message": {"id": f"dm{mm.group(1)}"}})
        elif (mm := re.fullmatch(r"drafts/([^/]+)", rest)) and method == "DELETE":
            self.drafts.pop(mm.group(1), None)
            cost, result = COST["draft"], (204, None)
        elif rest == "drafts/send" and method == "POST":
            message = self.drafts.pop(body["id"], None)
            if message is None:
                cost, result = COST["send"], (404, {"error": {"code": 404}})
            else:
                self.sent.append(base64.urlsafe_b64decode(message["raw"] + "=="))
                cost, result = COST["send"], (200, {"id": "sent-draft", "threadId": "tnew", "labelIds": ["SENT"]})
        else:
            return 404, {"error": {"code": 404, "message": f"no route {method} {rest}"}}
        if result == (None, None):
            return result  # no answer: the handler closes the connection
        if not self.spend(user, cost):
            return self._rate_limited()
        return result

    @staticmethod
    def _rate_limited():
        return 429, {
            "error": {
                "code": 429,
                "message": "User-rate limit exceeded",
                "errors": [{"reason": "rateLimitExceeded"}],
            }
        }

    def _list(self, q):
        if str(q.get("q", "")).startswith("rfc822msgid:"):
            return self._search_message_id(q)
        ids = self.order
        if "labelIds" in q:
            ids = [i for i in ids if q["labelIds"] in self.messages[i]["labelIds"]]
        size = int(q.get("maxResults", 100))
        start = int(q.get("pageToken", 0) or 0)
        page = ids[start : start + size]
        out = {
            "messages": [{"id": i, "threadId": self.messages[i]["threadId"]} for i in page],
            "resultSizeEstimate": len(ids),
        }
        if start + size < len(ids):
            out["nextPageToken"] = str(start + size)
        return 200, out

    def _read(self, message):
        """The message as this read answers it: with `rotate_attachment_ids`, its files under new ids."""
        if not message or not self.rotate_attachment_ids:
            return message
        message = copy.deepcopy(message)
        self.attachment_reads += 1
        stack = [message["payload"]]
        while stack:
            part = stack.pop()
            stack.extend(part.get("parts") or [])
            if part.get("filename"):
                for old in [t for t, at in self.attachment_tokens.items() if at == (message["id"], part["partId"])]:
                    del self.attachment_tokens[old]  # a new id replaces it: the old one lapses
                token = f"ANGjdJ-{message['id']}-{part['partId']}-r{self.attachment_reads}"
                self.attachment_tokens[token] = (message["id"], part["partId"])
                part["body"] = {**part.get("body", {}), "attachmentId": token}
        return message

    def _attachment(self, mid, attachment_id):
        if not self.rotate_attachment_ids:
            return 200, {"size": 9, "data": b64url(b"%PDF-1.4\n")}
        found = self.attachment_tokens.get(attachment_id)
        if found is None or found[0] != mid:
            return 400, {
                "error": {
                    "code": 400,
                    "message": "Invalid attachment token",
                    "errors": [{"reason": "invalidArgument", "message": "Invalid attachment token"}],
                    "status": "INVALID_ARGUMENT",
                }
            }
        data = f"%PDF-1.4 {mid} part {found[1]}\n".encode()
        return 200, {"attachmentId": attachment_id, "size": len(data), "data": b64url(data)}

    def _search_message_id(self, q):
        """messages.list with q=rfc822msgid:<id> (brackets optional), labelIds and includeSpamTrash as Gmail reads them."""
        wanted = q["q"].split(":", 1)[1].strip().strip("<>").lower()
        label = q.get("labelIds")
        hits = []
        for message in [*self.sent_messages.values(), *self.messages.values()]:
            headers = {h["name"].lower(): h["value"] for h in message["payload"]["headers"]}
            if headers.get("message-id", "").strip("<>").lower() != wanted:
                continue
            if label and label not in message["labelIds"]:
                continue
            if q.get("includeSpamTrash") != "true" and {"SPAM", "TRASH"} & set(message["labelIds"]):
                continue
            hits.append({"id": message["id"], "threadId": message["threadId"]})
        # Gmail leaves "messages" out altogether when nothing matched.
        return 200, ({"messages": hits, "resultSizeEstimate": len(hits)} if hits else {"resultSizeEstimate": 0})

    def _send(self, body):
        raw = base64.urlsafe_b64decode(body["raw"] + "=" * (-len(body["raw"]) % 4))
        parsed = email.message_from_bytes(raw)
        self.send_attempts.append(parsed["Message-ID"])
        fault = self.send_faults.pop(0) if self.send_faults else None
        if fault == "hang":
            time.sleep(self.hang)
            return None, None
        self.sent.append(raw)
        mid = f"sent{len(self.sent)}"
        message = {
            "id": mid,
            "threadId": body.get("threadId") or f"tsent{len(self.sent)}",
            "labelIds": ["SENT"],
            "payload": {
                "mimeType": parsed.get_content_type(),
                "headers": [{"name": k, "value": v} for k, v in parsed.items()],
            },
        }
        self.sent_messages[mid] = message
        if fault == "accept_then_hang":
            time.sleep(self.hang)
            return None, None
        if fault == "accept_then_drop":
            return None, None
        return 200, {"id": mid, "threadId": message["threadId"], "labelIds": ["SENT"]}

    def _history(self, q):
        start = int(q["startHistoryId"])
        if start < self.oldest_history:
            return 404, {
                "error": {"code": 404, "message": "Requested entity was not found.", "errors": [{"reason": "notFound"}]}
            }
        records = [r for hid, r in self.history if hid > start]
        return 200, {"history": records, "historyId": str(self.history_id)}

    def _modify(self, mid, body):
        msg = self.messages.get(mid)
        if msg is None:
            return 404, {"error": {"code": 404}}
        labels = [x for x in msg["labelIds"] if x not in body.get("removeLabelIds", [])]
        labels += [x for x in body.get("addLabelIds", []) if x not in labels]
        msg["labelIds"] = labels
        return 200, {"id": mid, "threadId": msg["threadId"], "labelIds": labels}

    def batch(self, body, content_type, user):
        parsed = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        out, boundary = [], "batch_fake_boundary"
        for part in parsed.iter_parts():
            inner = part.get_payload(decode=False)
            inner = inner if isinstance(inner, str) else inner.decode()
            request_line = inner.split("\n", 1)[0].strip()
            method, target, _ = request_line.split(" ", 2)
            url = urlsplit(target)
            self.batch_parts.append((method, url.path))
            self.batch_queries.append(parse_qs(url.query))
            status, payload = self.route(method, url.path, parse_qs(url.query), None, user)
            cid = part["Content-ID"].strip("<>")
            text = json.dumps(payload) if payload is not None else ""
            out.append(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{cid}>\r\n\r\n"
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\r\n{text}\r\n"
            )
        out.append(f"--{boundary}--\r\n")
        return "".join(out).encode(), f"multipart/mixed; boundary={boundary}"


def _handler(gmail):
    class Handler(QuietHandler):
        def _respond(self, status, data, content_type="application/json", headers=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            user = self.headers.get("Authorization", "")
            with gmail.lock:
                gmail.requests.append((method, url.path))
            if user.removeprefix("Bearer ") in gmail.refused_tokens:
                return self._respond(401, json.dumps(UNAUTHENTICATED).encode(), headers=UNAUTHENTICATED_HEADERS)
            if url.path == "/batch/gmail/v1":
                data, content_type = gmail.batch(raw, self.headers["Content-Type"], user)
                return self._respond(200, data, content_type)
            if url.path.startswith("/upload/"):
                return self._upload_start(method, url, raw)
            if url.path.startswith("/upload-session/"):
                return self._upload_chunk(url.path.rsplit("/", 1)[1], raw, user)
            body = json.loads(raw) if raw else None
            status, payload = gmail.route(method, url.path, parse_qs(url.query), body, user)
            if status is None:
                self.close_connection = True  # what a timeout or a dropped connection leaves the client with
                return
            self._respond(status, json.dumps(payload).encode() if payload is not None else b"")

        # Gmail's resumable media upload: start (uploadType=resumable), then PUT chunks with Content-Range.
        def _upload_start(self, method, url, raw):
            query = parse_qs(url.query)
            if query.get("uploadType") != ["resumable"]:
                return self._respond(400, b'{"error": {"code": 400, "message": "only resumable uploads here"}}')
            sid = f"s{len(gmail.uploads) + 1}"
            gmail.uploads[sid] = {
                "method": method,
                "path": url.path[len("/upload") :],
                "meta": json.loads(raw) if raw else {},
                "total": int(self.headers.get("X-Upload-Content-Length") or -1),
                "type": self.headers.get("X-Upload-Content-Type", ""),
                "data": b"",
                "chunks": [],
            }
            self._respond(200, b"", headers={"Location": f"{gmail.base}/upload-session/{sid}"})

        def _upload_chunk(self, sid, raw, user):
            session = gmail.uploads[sid]
            match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", self.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != len(session["data"]):
                return self._respond(400, b'{"error": {"code": 400, "message": "bad Content-Range"}}')
            session["data"] += raw
            session["chunks"].append(len(raw))
            if len(session["data"]) < int(match.group(3)):
                return self._respond(308, b"", headers={"Range": f"bytes=0-{len(session['data']) - 1}"})
            meta = session["meta"]
            raw_b64 = b64url(session["data"])
            body = (
                {**meta, "message": {**meta.get("message", {}), "raw": raw_b64}}
                if "message" in meta or "drafts" in session["path"]
                else {**meta, "raw": raw_b64}
            )
            gmail.upload_log.append((session["path"], list(session["chunks"])))
            status, payload = gmail.route(session["method"], session["path"], {}, body, user)
            self._respond(status, json.dumps(payload).encode() if payload is not None else b"")

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_PUT(self):
            self._handle("PUT")

        def do_PATCH(self):
            self._handle("PATCH")

        def do_DELETE(self):
            self._handle("DELETE")

    return Handler
