"""Mail's push verifiers held to the webhook contract (tests/contracts/webhooks.py).

Gmail: the Pub/Sub push's OIDC token is the signature and its audience the
configured "secret" (GMAIL_PUSH_AUDIENCE, comma-separated during a change).
Outlook: Graph notifications, each checked against its Mailbox's stored clientState.
"""

import json
import time

import pytest

from messaging.mail.models import Mailbox
from tests.contracts.webhooks import NEW_SECRET, GraphNotificationContract, WebhookContract

from .conftest import ms_conn
from .test_push import delivery, token

pytestmark = pytest.mark.django_db


class TestGmailPushContract(WebhookContract):
    url = "/webhooks/gmail/"
    secret_setting = "GMAIL_PUSH_AUDIENCE"
    provider_fixtures = ("push",)  # service account, certificates served by `responses`, topic

    @pytest.fixture(autouse=True)
    def _signer(self, keys):
        self.signer = keys["good"][0]

    def event(self, n):
        return delivery(message_id=f"pubsub-{n}", history_id=5000 + n)

    def malformed(self):
        return {"message": {"messageId": "pubsub-bad", "data": "bm90IGpzb24="}}  # data: base64 of "not json"

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


class TestOutlookMailNotificationContract(GraphNotificationContract):
    url = "/webhooks/outlook/"
    event_type_prefix = "outlook"
    provider_fixtures = ("graph_settings",)

    @pytest.fixture(autouse=True)
    def _owner(self, user):
        self.user = user
        self.made = 0

    def subscribe(self, client_state):
        self.made += 1
        conn = ms_conn(self.user, account=f"mailbox{self.made}@contoso.com")
        mailbox = Mailbox.objects.create(connection=conn, subscription_id=f"sub-{self.made}", client_state=client_state)
        return mailbox.subscription_id
