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

import time

import pytest

from integrations.models import WebhookEvent

OLD_SECRET = "whsec_contract_old_0123456789"
NEW_SECRET = "whsec_contract_new_9876543210"


@pytest.mark.django_db
class WebhookContract:
    url = ""
    secret_setting = ""
    content_type = "application/json"

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
