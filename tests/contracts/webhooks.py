"""The contract every provider's webhook verifier is held to, subclassed once per provider.

    class TestStripeWebhookContract(WebhookContract, SignedTimestampContract):
        url = "/webhooks/stripe/"
        secret_setting = "STRIPE_WEBHOOK_SECRET"
        provider_fixtures = ("stripe_configured",)

        def event(self, n): ...                  # a valid delivery body (dict or bytes); n makes it distinct
        def malformed(self): ...                 # signed but not a valid event: 400
        def post(self, client, body, *, secret, timestamp=None, signature=None): ...   # signs as the provider does

The status policy (integrations.webhooks.WebhookVerifier): a bad, missing or
stale signature is 403, a malformed body or a wrong content type 400, a body
above WEBHOOK_MAX_BYTES 413, no secret configured 503, an unknown provider 404;
a duplicate delivery inserts nothing and still answers 200. A rotation keeps
the old and the new secret side by side (comma-separated) and both verify.
"""

import json
import time

import pytest

from integrations.models import WebhookEvent

# Valid JSON nested deeper than the decoder recurses (it raises RecursionError, once a 500).
TOO_DEEP = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
OLD_SECRET = "whsec_contract_old_0123456789"
NEW_SECRET = "whsec_contract_new_9876543210"


@pytest.mark.django_db
class WebhookContract:
    url = ""
    secret_setting = ""
    content_type = "application/json"
    # False for a provider whose deliveries carry no JSON body (Google Calendar's headers-only pings).
    json_body = True

    def event(self, n):
        raise NotImplementedError

    def malformed(self):
        """A body the provider's verifier must refuse as malformed once its signature checks out."""
        raise NotImplementedError

    def configure_rotation(self, new, old):
        """Both secrets configured side by side, as an operator does mid-rotation."""
        setattr(self.settings, self.secret_setting, f"{new},{old}")

    def post(self, client, body, *, secret, timestamp=None, signature=None, content_type=None):
        raise NotImplementedError

    # The provider's own fixtures that configure it (run first; the secret is then set here).
    provider_fixtures = ()

    @pytest.fixture(autouse=True)
    def _configured(self, settings, request):
        for name in self.provider_fixtures:
            request.getfixturevalue(name)
        setattr(settings, self.secret_setting, NEW_SECRET)
        self.settings = settings

    def test_a_signed_delivery_is_stored_once_and_answered_200(self, client):
        response = self.post(client, self.event(1), secret=NEW_SECRET)
        assert response.status_code == 200, response.content
        assert WebhookEvent.objects.count() == 1

    def test_a_duplicate_delivery_inserts_nothing_and_still_answers_200(self, client):
        body = self.event(2)
        assert self.post(client, body, secret=NEW_SECRET).status_code == 200
        assert self.post(client, body, secret=NEW_SECRET).status_code == 200
        assert WebhookEvent.objects.count() == 1

    def test_a_bad_signature_is_403_and_stores_nothing(self, client):
        response = self.post(client, self.event(3), secret="whsec_someone_else")
        assert response.status_code == 403 and response.json()["error"] == "bad_signature"
        assert WebhookEvent.objects.count() == 0

    def test_a_missing_signature_is_403(self, client):
        response = self.post(client, self.event(4), secret=NEW_SECRET, signature="")
        assert response.status_code == 403 and response.json()["error"] == "missing_signature"
        assert WebhookEvent.objects.count() == 0

    def test_during_a_rotation_both_the_old_and_the_new_secret_verify(self, client):
        self.configure_rotation(NEW_SECRET, OLD_SECRET)
        assert self.post(client, self.event(5), secret=OLD_SECRET).status_code == 200
        assert self.post(client, self.event(6), secret=NEW_SECRET).status_code == 200
        assert WebhookEvent.objects.count() == 2

    def test_after_a_rotation_the_old_secret_is_refused(self, client):
        response = self.post(client, self.event(7), secret=OLD_SECRET)
        assert response.status_code == 403

    def test_a_malformed_body_is_400_and_stores_nothing(self, client):
        response = self.post(client, self.malformed(), secret=NEW_SECRET)
        assert response.status_code == 400, response.content
        assert WebhookEvent.objects.count() == 0

    def test_a_signed_body_nested_too_deeply_is_400_and_stores_nothing(self, client):
        if self.content_type != "application/json" or not self.json_body:
            pytest.skip("this provider's deliveries are not JSON")
        response = self.post(client, TOO_DEEP, secret=NEW_SECRET)
        assert response.status_code == 400, response.content
        assert response.json()["error"] == "malformed_body"
        assert WebhookEvent.objects.count() == 0

    def test_a_wrong_content_type_is_400(self, client):
        response = self.post(client, self.event(8), secret=NEW_SECRET, content_type="text/plain")
        assert response.status_code == 400 and response.json()["error"] == "unsupported_content_type"

    def test_an_unconfigured_webhook_is_503(self, client):
        setattr(self.settings, self.secret_setting, "")
        response = self.post(client, self.event(9), secret=NEW_SECRET)
        assert response.status_code == 503 and response.json()["error"] == "webhook_not_configured"

    def test_a_body_over_the_limit_is_413(self, client):
        self.settings.WEBHOOK_MAX_BYTES = 64
        response = self.post(client, self.event(10), secret=NEW_SECRET)
        assert response.status_code == 413
        assert WebhookEvent.objects.count() == 0


class SignedTimestampContract:
    """For providers that sign a timestamp: a delivery outside the replay window is refused."""

    tolerance_seconds = 300

    def test_a_stale_timestamp_is_403_and_stores_nothing(self, client):
        response = self.post(
            client, self.event(11), secret=NEW_SECRET, timestamp=time.time() - self.tolerance_seconds - 5
        )
        assert response.status_code == 403 and response.json()["error"] == "stale_signature"
        assert WebhookEvent.objects.count() == 0

    def test_a_timestamp_inside_the_window_is_accepted(self, client):
        response = self.post(
            client, self.event(12), secret=NEW_SECRET, timestamp=time.time() - self.tolerance_seconds + 10
        )
        assert response.status_code == 200


class GraphNotificationContract(WebhookContract):
    """For Microsoft Graph notification URLs (integrations.webhooks.graph.GraphNotificationVerifier).

    Graph signs nothing: each notification item repeats the `clientState` the
    hub stored with its subscription, so the "secret" here is that stored
    clientState and `post(secret=...)` puts it in the item. A subclass sets
    `url` and `event_type_prefix` and implements `subscribe(client_state) ->
    subscription id` (store a subscription of its own kind with that secret);
    it may override `event(n)` with a notification of its own resource.
    "Not configured" is MICROSOFT_CLIENT_ID unset (no subscription can exist).
    """

    secret_setting = "MICROSOFT_CLIENT_ID"
    event_type_prefix = ""

    def subscribe(self, client_state):
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _subscription(self, _configured):
        self.subscription_id = self.subscribe(NEW_SECRET)

    def event(self, n, *, subscription_id=None):
        return {
            "subscriptionId": subscription_id or self.subscription_id,
            "subscriptionExpirationDateTime": "2026-12-09T10:00:00+00:00",
            "changeType": "created",
            "tenantId": "00000000-0000-0000-0000-00000000cafe",
            "resource": f"Users/u-1/Messages/AAMk{n}",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.etag": f'W/"CQAAAB{n}"',
                "id": f"AAMk{n}",
            },
        }

    def lifecycle(self, kind, *, subscription_id=None):
        return {
            "subscriptionId": subscription_id or self.subscription_id,
            "subscriptionExpirationDateTime": "2026-12-09T10:00:00+00:00",
            "tenantId": "00000000-0000-0000-0000-00000000cafe",
            "lifecycleEvent": kind,
        }

    def malformed(self):
        item = self.event(0)
        del item["changeType"]  # neither a change nor a lifecycle notification
        return item

    def configure_rotation(self, new, old):
        raise NotImplementedError("Graph cannot change a subscription's clientState; see the rotation tests below.")

    def post(self, client, body, *, secret, timestamp=None, signature=None, content_type=None):
        items = body if isinstance(body, list) else [body]
        state = secret if signature is None else signature
        value = [{**item, **({"clientState": state} if state else {})} for item in items]
        return client.post(self.url, json.dumps({"value": value}), content_type=content_type or self.content_type)

    # A rotation is a new subscription (with its own clientState) beside the old one, both delivering.
    def test_during_a_rotation_both_the_old_and_the_new_secret_verify(self, client):
        old_subscription = self.subscribe(OLD_SECRET)
        assert self.post(client, self.event(5, subscription_id=old_subscription), secret=OLD_SECRET).status_code == 200
        assert self.post(client, self.event(6), secret=NEW_SECRET).status_code == 200
        assert WebhookEvent.objects.count() == 2

    def test_one_subscriptions_client_state_does_not_verify_another(self, client):
        other = self.subscribe(OLD_SECRET)
        response = self.post(client, self.event(13, subscription_id=other), secret=NEW_SECRET)
        assert response.status_code == 403 and response.json()["error"] == "bad_signature"
        assert WebhookEvent.objects.count() == 0

    def test_the_validation_handshake_echoes_the_token_as_plain_text_and_stores_nothing(self, client):
        response = client.post(
            f"{self.url}?validationToken=Validation%3A+Testing+client+application+%3Cb%3E",
            data="",
            content_type="text/plain",
        )
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response.content == b"Validation: Testing client application <b>"
        assert WebhookEvent.objects.count() == 0

    def test_a_validation_token_that_cannot_be_one_is_400(self, client):
        response = client.post(f"{self.url}?validationToken={'x' * 1100}", data="", content_type="text/plain")
        assert response.status_code == 400

    def test_the_client_state_is_not_stored_and_the_type_names_the_change(self, client):
        assert self.post(client, self.event(14), secret=NEW_SECRET).status_code == 200
        event = WebhookEvent.objects.get()
        assert "clientState" not in event.payload and NEW_SECRET not in json.dumps(event.payload)
        assert event.type == f"{self.event_type_prefix}.created"

    def test_two_updates_of_one_item_are_two_events(self, client):
        first, second = self.event(15), self.event(15)
        second["resourceData"] = {**second["resourceData"], "@odata.etag": 'W/"CQAAAB-changed"'}
        assert self.post(client, first, secret=NEW_SECRET).status_code == 200
        assert self.post(client, second, secret=NEW_SECRET).status_code == 200
        assert WebhookEvent.objects.count() == 2

    @pytest.mark.parametrize("kind", ["reauthorizationRequired", "subscriptionRemoved", "missed"])
    def test_lifecycle_notifications_are_stored_with_their_kind(self, client, kind):
        assert self.post(client, self.lifecycle(kind), secret=NEW_SECRET).status_code == 200
        assert WebhookEvent.objects.get().type == f"{self.event_type_prefix}.{kind}"

    def test_a_lifecycle_retry_is_stored_once_and_a_later_one_again(self, client, monkeypatch):
        from integrations.webhooks.graph import GraphNotificationVerifier

        clock = [1_800_000_000.0]
        monkeypatch.setattr(GraphNotificationVerifier, "now", lambda self: clock[0])
        body = self.lifecycle("missed")
        assert self.post(client, body, secret=NEW_SECRET).json()["status"] == "received"
        clock[0] += 30  # Graph retrying the same delivery
        assert self.post(client, body, secret=NEW_SECRET).json()["status"] == "duplicate"
        clock[0] += GraphNotificationVerifier.dedupe_window_seconds  # a later, identical notification
        assert self.post(client, body, secret=NEW_SECRET).json()["status"] == "received"
        assert WebhookEvent.objects.count() == 2

    def test_items_of_unknown_subscriptions_are_dropped_beside_verified_ones(self, client):
        unknown = self.event(16, subscription_id="sub-nobody-knows")
        response = self.post(client, [self.event(17), unknown], secret=NEW_SECRET)
        assert response.status_code == 200, response.content
        assert WebhookEvent.objects.count() == 1

    def test_a_delivery_of_unknown_subscriptions_only_is_403(self, client):
        response = self.post(client, self.event(18, subscription_id="sub-nobody-knows"), secret=NEW_SECRET)
        assert response.status_code == 403
        assert WebhookEvent.objects.count() == 0

    def test_one_wrong_client_state_refuses_the_whole_delivery(self, client):
        other = self.subscribe(OLD_SECRET)
        good = {**self.event(19), "clientState": NEW_SECRET}
        forged = {**self.event(20, subscription_id=other), "clientState": NEW_SECRET}
        response = client.post(self.url, json.dumps({"value": [good, forged]}), content_type="application/json")
        assert response.status_code == 403
        assert WebhookEvent.objects.count() == 0

    def test_a_signed_body_nested_too_deeply_is_400_and_stores_nothing(self, client):
        # Graph's clientState sits inside the body, so the body is read before anything is verified.
        response = client.post(self.url, TOO_DEEP, content_type="application/json")
        assert response.status_code == 400, response.content
        assert response.json()["error"] == "malformed_body"
        assert WebhookEvent.objects.count() == 0

    def test_an_empty_value_list_is_400(self, client):
        response = client.post(self.url, json.dumps({"value": []}), content_type="application/json")
        assert response.status_code == 400
