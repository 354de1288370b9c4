"""Google Meet's Pub/Sub push verifier held to the webhook contract (tests/contracts/webhooks.py): the OIDC
token is the signature and its audience the configured "secret" (GOOGLE_MEET_PUSH_AUDIENCE, comma-separated
while it changes)."""

import json
import time

import pytest

from tests.contracts.webhooks import NEW_SECRET, WebhookContract

from .meet_events_fake import WEBHOOK, delivery, token

pytestmark = pytest.mark.django_db


class TestGoogleMeetPushContract(WebhookContract):
    url = WEBHOOK
    provider = "google_meet"
    secret_setting = "GOOGLE_MEET_PUSH_AUDIENCE"
    provider_fixtures = ("gmeet",)

    @pytest.fixture(autouse=True)
    def _signer(self, meet_push_keys):
        self.signer = meet_push_keys["good"][0]

    def event(self, n):
        return delivery(
            "conference.v2.started", {"conferenceRecord": {"name": f"conferenceRecords/c{n}"}}, ce_id=f"ce-{n}"
        )

    def malformed(self):
        payload = delivery("conference.v2.started", {})
        payload["message"]["data"] = "bm90IGpzb24="  # base64 of "not json"
        return payload

    def post(self, client, body, *, secret, timestamp=None, signature=None, content_type=None):
        if signature is None:
            claims = {"aud": secret}
            if timestamp is not None:
                claims |= {"iat": int(timestamp), "exp": int(timestamp) + 600}
            signature = "Bearer " + token(self.signer, **claims)
        headers = {"Authorization": signature} if signature else {}
        raw = body if isinstance(body, bytes) else json.dumps(body)
        return client.post(self.url, raw, content_type=content_type or self.content_type, headers=headers)

    def test_an_expired_token_is_403(self, client):
        response = self.post(client, self.event(20), secret=NEW_SECRET, timestamp=time.time() - 7200)
        assert response.status_code == 403
