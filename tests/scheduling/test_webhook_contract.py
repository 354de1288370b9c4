"""Zoom and Webex verifiers held to the shared webhook contract (tests/contracts/webhooks.py)."""

import hashlib
import hmac
import json
import time

from tests.contracts.webhooks import SignedTimestampContract, WebhookContract


def zoom_sign(body, secret, ts):
    return "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()


class TestZoomWebhookContract(SignedTimestampContract, WebhookContract):
    url = "/webhooks/zoom/"
    secret_setting = "ZOOM_WEBHOOK_SECRET_TOKEN"
    provider_fixtures = ("zoom",)

    def event(self, n):
        return {"event": "meeting.started", "event_ts": 1_900_000_000_000 + n, "payload": {"object": {"id": n}}}

    def malformed(self):
        return {"event": "meeting.started", "payload": "not an object"}

    def post(self, client, body, *, secret, timestamp=None, signature=None, content_type=None):
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        ts = str(int(timestamp if timestamp is not None else time.time()))
        headers = {"HTTP_X_ZM_REQUEST_TIMESTAMP": ts}
        sig = zoom_sign(raw, secret, ts) if signature is None else signature
        if sig:
            headers["HTTP_X_ZM_SIGNATURE"] = sig
        return client.post(self.url, raw, content_type=content_type or self.content_type, **headers)


class TestWebexWebhookContract(WebhookContract):
    url = "/webhooks/webex/"
    secret_setting = "WEBEX_WEBHOOK_SECRET"
    provider_fixtures = ("webex_api",)

    def event(self, n):
        return {
            "id": "Y2lzY29zcGFyazovL3VzL1dFQkhPT0svMQ",
            "name": "Integration Hub meetings started",
            "resource": "meetings",
            "event": "started",
            "created": "2030-01-01T00:00:00.000Z",
            "data": {"id": f"870f51ff287b41be84648412901e{n:04d}_I_1", "start": "2030-01-10T15:00:00Z"},
        }

    def malformed(self):
        return {"resource": "meetings", "event": "started", "data": "nope"}

    def post(self, client, body, *, secret, timestamp=None, signature=None, content_type=None):
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        sig = hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest() if signature is None else signature
        headers = {"HTTP_X_SPARK_SIGNATURE": sig} if sig else {}
        return client.post(self.url, raw, content_type=content_type or self.content_type, **headers)
