"""Graph's mail sending, played over respx: what the hub's send path and its Sent Items lookup reach.

Drafts are created from base64 MIME (POST /me/messages) and keep the MIME's
Message-ID as internetMessageId, as Exchange does; a draft's send
(POST /me/messages/{id}/send) and sendMail move or put the message in Sent
Items, which GET /me/mailFolders/sentitems/messages can filter by
internetMessageId. `send_faults` plays what a timeout hides: each send takes
the next fault, if any ("accept_then_timeout": Graph keeps the message but the
answer never arrives; "timeout": nothing kept, the same for the client;
"refuse": a clean 400, nothing kept).

A sent draft leaves Drafts at once, and its copy lands in Sent Items under the
draft's immutable id (the hub asks for immutable ids on every request) only
`sent_copy_lag` seconds later on the fake's own clock (`advance`): until then
GET /me/messages/{id} on it answers 404 ErrorItemNotFound and the Sent Items
filter does not show it, as Graph documents ("the copy of the message is not
created until the message successfully sends, which may take time").
"""

import base64
import email
import re
from urllib.parse import unquote

import httpx

CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#users('grace%40contoso.com')/mailFolders('sentitems')/messages"


class FakeGraphMail:
    def __init__(self, respx_mock):
        self.drafts = {}  # id -> message resource (isDraft true)
        self.created = []  # the id of every draft made
        self.sent_copy_lag = 0.0
        self.now = 0.0
        self._landing = []  # (when, resource): sent, its copy not yet in Sent Items
        self.sent_items = {}  # id -> message resource in Sent Items
        self.sent = []  # the MIME of every message Graph kept for sending
        self.send_attempts = []  # the Message-ID of every send that reached Graph
        self.send_faults = []
        self.lookups = []  # the $filter of every Sent Items query
        respx_mock.post("/me/messages").mock(side_effect=self._create)
        respx_mock.post(url__regex=r".*/me/messages/(?P<mid>[^/]+)/send$").mock(side_effect=self._send_draft)
        respx_mock.post("/me/sendMail").mock(side_effect=self._send_mail)
        respx_mock.get("/me/mailFolders/sentitems/messages").mock(side_effect=self._sent_items)
        respx_mock.get(url__regex=r".*/me/messages/(?P<mid>[^/?]+)(\?.*)?$").mock(side_effect=self._get)

    def _resource(self, mime, n, *, draft):
        parsed = email.message_from_bytes(mime)
        return {
            "id": f"AAMkAGI2TG93AAA{n:04d}=",
            "conversationId": f"AAQkAGI2conv{n:04d}=",
            "internetMessageId": parsed["Message-ID"],
            "subject": parsed["Subject"] or "",
            "isDraft": draft,
            "_mime": mime,
        }

    @staticmethod
    def _public(resource):
        return {k: v for k, v in resource.items() if not k.startswith("_")}

    def _create(self, request):
        resource = self._resource(base64.b64decode(request.content), len(self.drafts) + 1, draft=True)
        self.drafts[resource["id"]] = resource
        self.created.append(resource["id"])
        return httpx.Response(201, json=self._public(resource))

    def _deliver(self, request, resource):
        """One send: the fault it meets decides whether Graph keeps it and whether the client hears back."""
        self.send_attempts.append(resource["internetMessageId"])
        fault = self.send_faults.pop(0) if self.send_faults else None
        if fault == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if fault == "refuse":  # a clean 4xx: nothing kept
            return httpx.Response(
                400,
                json={"error": {"code": "ErrorInvalidRecipients", "message": "At least one recipient is not valid."}},
            )
        self.sent.append(resource["_mime"])
        # A sent draft leaves Drafts; its copy, keeping the immutable id, lands in Sent Items after the lag.
        self.drafts.pop(resource["id"], None)
        self._landing.append((self.now + self.sent_copy_lag, {**resource, "isDraft": False}))
        self._land()
        if fault == "accept_then_timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(202)

    def _send_draft(self, request, mid):
        draft = self.drafts.get(unquote(mid))
        if draft is None:  # sent already (it left Drafts), or never there
            return httpx.Response(
                404, json={"error": {"code": "ErrorItemNotFound", "message": "The specified object was not found."}}
            )
        return self._deliver(request, draft)

    def _send_mail(self, request):
        resource = self._resource(base64.b64decode(request.content), 500 + len(self.sent), draft=False)
        return self._deliver(request, resource)

    def advance(self, seconds):
        self.now += seconds
        self._land()

    def _land(self):
        for entry in [e for e in self._landing if e[0] <= self.now]:
            self._landing.remove(entry)
            self.sent_items[entry[1]["id"]] = entry[1]

    def _get(self, request, mid):
        found = self.drafts.get(unquote(mid)) or self.sent_items.get(unquote(mid))
        if found is None:
            return httpx.Response(
                404, json={"error": {"code": "ErrorItemNotFound", "message": "The specified object was not found."}}
            )
        fields = (request.url.params.get("$select") or "id").split(",")
        return httpx.Response(200, json={k: found[k] for k in fields if k in found})

    def _sent_items(self, request):
        query = request.url.params.get("$filter", "")
        self.lookups.append(query)
        match = re.fullmatch(r"internetMessageId eq '((?:[^']|'')*)'", query)
        if match is None:
            return httpx.Response(400, json={"error": {"code": "BadRequest", "message": "Invalid filter clause"}})
        wanted = match.group(1).replace("''", "'")
        fields = (request.url.params.get("$select") or "id").split(",")
        value = [
            {k: m[k] for k in fields if k in m} for m in self.sent_items.values() if m["internetMessageId"] == wanted
        ]
        return httpx.Response(200, json={"@odata.context": CONTEXT, "value": value})

    def delivered(self, message_id):
        """How many messages with this Message-ID went out."""
        return sum(1 for mime in self.sent if email.message_from_bytes(mime)["Message-ID"] == message_id)
