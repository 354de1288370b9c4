"""Idempotency-Key fingerprints cover every repeated field and file; the shipped k8s config attributes the real client."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.idempotency import idempotent

pytestmark = pytest.mark.django_db

sent = []


class SendView(APIView):
    """Like the mail send endpoint: repeated `attachments` files and repeated form fields all count."""

    @idempotent
    def post(self, request):
        sent.append(
            {
                "to": request.data.getlist("to"),
                "attachments": [f.read() for f in request.FILES.getlist("attachments")],
            }
        )
        return Response({"sent": len(sent)}, status=202)


urlpatterns = [path("send/", SendView.as_view())]


@pytest.fixture(autouse=True)
def _reset():
    sent.clear()


def _file(name, content):
    return SimpleUploadedFile(name, content, content_type="application/pdf")


def _send(client, body):
    return client.post("/send/", body, format="multipart", HTTP_IDEMPOTENCY_KEY="send-1")


@pytest.mark.urls(__name__)
class TestIdempotencyFingerprintCoversEveryValue:
    def test_different_attachments_under_the_same_key_are_a_422_not_a_replay(self, user_client):
        # The mail send endpoint takes several files in `attachments` (request.FILES.getlist); the
        # fingerprint hashed only the last one, so a different first file replayed the first answer.
        first = _send(user_client, {"attachments": [_file("a.pdf", b"first"), _file("b.pdf", b"same")]})
        assert first.status_code == 202
        again = _send(user_client, {"attachments": [_file("x.pdf", b"other"), _file("b.pdf", b"same")]})
        assert again.status_code == 422, again.content
        assert again.json()["error"] == "idempotency_key_reused"
        assert "Idempotent-Replayed" not in again

    def test_different_repeated_form_values_under_the_same_key_are_a_422_not_a_replay(self, user_client):
        # A form field sent several times (`to=a&to=b`): only the last value was fingerprinted.
        first = _send(user_client, {"to": ["a@example.com", "b@example.com"]})
        assert first.status_code == 202
        again = _send(user_client, {"to": ["c@example.com", "b@example.com"]})
        assert again.status_code == 422, again.content
        assert len(sent) == 1

    def test_the_same_files_and_fields_still_replay(self, user_client):
        def body():
            return {
                "to": ["a@example.com", "b@example.com"],
                "attachments": [_file("a.pdf", b"1"), _file("b.pdf", b"2")],
            }

        first = _send(user_client, body())
        again = _send(user_client, body())
        assert (first.status_code, again.status_code) == (202, 202)
        assert again["Idempotent-Replayed"] == "true" and len(sent) == 1


class TestShippedKubernetesConfigAttributesTheRealClient:
    """deploy/k8s/configmap.yaml sets FORWARDED_ALLOW_IPS="*": uvicorn's proxy middleware then makes the
    *leftmost* X-Forwarded-For entry (whatever the client sent) the request's REMOTE_ADDR. Without
    TRUSTED_PROXY_COUNT, client_ip() trusted that address, so a client rotating a forged X-Forwarded-For
    was a fresh address for every login attempt (the per-IP lockout never fired), and could claim an
    address in METRICS_ALLOWED_NETWORKS."""

    REAL_CLIENT = "203.0.113.50"  # what the ingress appends
    INGRESS_POD = "10.42.0.7"

    def _configmap(self):
        from pathlib import Path

        import yaml

        path = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "configmap.yaml"
        return yaml.safe_load(path.read_text())["data"]

    def _client_for(self, settings, forged):
        """An APIClient whose request looks as it does behind the ingress, under the shipped configuration."""
        from rest_framework.test import APIClient
        from uvicorn.middleware.proxy_headers import _TrustedHosts

        data = self._configmap()
        settings.TRUSTED_PROXY_COUNT = int(data.get("TRUSTED_PROXY_COUNT", 0))
        forwarded = f"{forged}, {self.REAL_CLIENT}"  # the client's forged entry, then the ingress's own
        trusted = _TrustedHosts(data.get("FORWARDED_ALLOW_IPS", "127.0.0.1"))
        remote = trusted.get_trusted_client_address(forwarded)[0] if self.INGRESS_POD in trusted else self.INGRESS_POD
        return APIClient(REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    def test_a_forged_x_forwarded_for_does_not_dodge_the_per_address_lockout(self, settings):
        from tests.factories import UserFactory

        users = [UserFactory() for _ in range(settings.AXES_FAILURE_LIMIT + 1)]
        for i, user in enumerate(users[:-1]):  # one failure per username: only the per-address count adds up
            self._client_for(settings, f"192.0.2.{i + 1}").post(
                "/api/v1/auth/token/", {"username": user.username, "password": "wrong"}, format="json"
            )
        resp = self._client_for(settings, "192.0.2.250").post(
            "/api/v1/auth/token/", {"username": users[-1].username, "password": "wrong"}, format="json"
        )
        assert resp.status_code == 429, resp.content

    def test_a_forged_x_forwarded_for_does_not_open_metrics(self, settings):
        settings.METRICS_TOKEN = ""
        settings.METRICS_ALLOWED_NETWORKS = ["192.0.2.0/24"]  # e.g. the monitoring network
        resp = self._client_for(settings, "192.0.2.10").get("/metrics")
        assert resp.status_code == 401
