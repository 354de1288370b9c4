import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import path
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.idempotency import idempotency_purge, idempotent
from integrations.errors import DomainError
from integrations.models import IdempotencyRecord

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

side_effects = []


class ChargeView(APIView):
    @idempotent
    def post(self, request):
        if request.data.get("fail") == "server":
            return Response({"error": "upstream"}, status=502)
        if request.data.get("fail") == "raise":
            raise DomainError(400, "bad", "Bad request.")
        side_effects.append(dict(request.data))
        return Response({"charge": len(side_effects)}, status=201)


urlpatterns = [path("charge/", ChargeView.as_view()), path("other/", ChargeView.as_view())]


@pytest.fixture(autouse=True)
def _reset():
    side_effects.clear()


def _post(client, body, key="key-1", url="/charge/", **kw):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **kw)


def test_a_repeat_with_the_same_key_and_body_replays_without_a_second_side_effect(user_client):
    first = _post(user_client, {"amount": 100})
    again = _post(user_client, {"amount": 100})
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json() == {"charge": 1}
    assert again["Idempotent-Replayed"] == "true"
    assert len(side_effects) == 1


def test_the_same_key_with_a_different_body_is_a_422(user_client):
    _post(user_client, {"amount": 100})
    resp = _post(user_client, {"amount": 999})
    assert resp.status_code == 422 and resp.json()["error"] == "idempotency_key_reused"
    assert len(side_effects) == 1


def test_the_same_key_on_another_endpoint_is_a_422(user_client):
    _post(user_client, {"amount": 100})
    assert _post(user_client, {"amount": 100}, url="/other/").status_code == 422


def test_keys_are_scoped_to_the_user(user_client, client_for, other_user):
    _post(user_client, {"amount": 100})
    resp = _post(client_for(other_user), {"amount": 100})
    assert resp.status_code == 201 and resp.json() == {"charge": 2}


def test_a_request_still_running_answers_409(user_client):
    _post(user_client, {"amount": 100})
    IdempotencyRecord.objects.update(status="in_progress", response_status=None, response_body=None)
    resp = _post(user_client, {"amount": 100})
    assert resp.status_code == 409 and resp["Retry-After"] == "1"
    assert len(side_effects) == 1


def _died_running(minutes_ago):
    """As a first request leaves its key when its worker is killed after the claim: in progress, no answer."""
    IdempotencyRecord.objects.update(
        status="in_progress",
        response_status=None,
        response_body=None,
        created_at=timezone.now() - dt.timedelta(minutes=minutes_ago),
    )


def test_a_key_whose_request_died_is_taken_over_by_a_retry_after_the_claim_time(user_client, settings, caplog):
    settings.IDEMPOTENCY_CLAIM_SECONDS = 600
    _post(user_client, {"amount": 100})
    _died_running(minutes_ago=11)
    resp = _post(user_client, {"amount": 100})
    assert resp.status_code == 201 and resp.json() == {"charge": 2} and "Idempotent-Replayed" not in resp
    record = IdempotencyRecord.objects.get()
    assert record.status == "done" and record.response_body == {"charge": 2}
    assert "taken over from a request that died" in caplog.text
    again = _post(user_client, {"amount": 100})  # from now on, the new answer is the one replayed
    assert again.json() == {"charge": 2} and again["Idempotent-Replayed"] == "true" and len(side_effects) == 2


def test_a_claim_younger_than_the_claim_time_is_still_a_409(user_client, settings):
    settings.IDEMPOTENCY_CLAIM_SECONDS = 600
    _post(user_client, {"amount": 100})
    _died_running(minutes_ago=9)
    assert _post(user_client, {"amount": 100}).status_code == 409
    assert len(side_effects) == 1


def test_an_abandoned_key_is_not_taken_over_by_a_different_request(user_client, settings):
    settings.IDEMPOTENCY_CLAIM_SECONDS = 600
    _post(user_client, {"amount": 100})
    _died_running(minutes_ago=30)
    assert _post(user_client, {"amount": 999}).status_code == 422
    assert IdempotencyRecord.objects.get().status == "in_progress" and len(side_effects) == 1


def test_of_two_retries_taking_over_one_key_only_one_runs(user, settings, monkeypatch):
    """The takeover is a conditional update on the old claim: the second racer, holding the same stale row,
    matches nothing and answers the new claim (in progress: 409), never running the view twice."""
    from integrations.api import idempotency

    settings.IDEMPOTENCY_CLAIM_SECONDS = 600
    IdempotencyRecord.objects.create(owner=user, key="k", fingerprint="f")
    _died_running(minutes_ago=11)
    stale = IdempotencyRecord.objects.get()
    abandoned_at = stale.created_at
    assert idempotency._claim(user, "k", "f") is None  # the first racer takes the key
    # The second read the row before the first took it over.
    monkeypatch.setattr(IdempotencyRecord.objects, "get", lambda **kw: stale)
    second = idempotency._claim(user, "k", "f")
    assert second is not None and second.status == "in_progress"
    assert second.created_at > abandoned_at  # it answers with the winner's claim


def test_a_server_error_or_exception_leaves_the_key_free_for_a_retry(user_client):
    assert _post(user_client, {"fail": "server"}).status_code == 502
    assert _post(user_client, {"fail": "raise"}, key="key-2").status_code == 400
    assert not IdempotencyRecord.objects.exists()


def test_without_the_header_nothing_is_stored(user_client):
    user_client.post("/charge/", {"amount": 1}, format="json")
    user_client.post("/charge/", {"amount": 1}, format="json")
    assert len(side_effects) == 2 and not IdempotencyRecord.objects.exists()


def test_keys_expire_after_24_hours(user, user_client):
    _post(user_client, {"amount": 100})
    IdempotencyRecord.objects.update(created_at=timezone.now() - dt.timedelta(hours=25))
    assert _post(user_client, {"amount": 100}).json() == {"charge": 2}
    IdempotencyRecord.objects.update(created_at=timezone.now() - dt.timedelta(hours=25))
    assert idempotency_purge() == 1


def test_uploads_are_fingerprinted_by_content(user_client):
    def upload(content):
        return user_client.post(
            "/charge/", {"file": SimpleUploadedFile("a.txt", content)}, format="multipart", HTTP_IDEMPOTENCY_KEY="up"
        )

    assert upload(b"hello").status_code == 201
    assert upload(b"hello").status_code == 201 and len(side_effects) == 1
    assert upload(b"HELLO").status_code == 422


def test_an_overlong_key_is_a_400(user_client):
    assert _post(user_client, {}, key="k" * 300).status_code == 400
