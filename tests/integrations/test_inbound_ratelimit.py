import pytest
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.ratelimit import ratelimit

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


class LimitedView(APIView):
    @ratelimit(group="test.limited", rate="3/m")
    def post(self, request):
        return Response({"ok": True})


urlpatterns = [path("limited/", LimitedView.as_view())]


def test_the_fourth_request_in_a_minute_is_a_json_429_with_retry_after(user_client, still_clock):
    assert [user_client.post("/limited/").status_code for _ in range(3)] == [200, 200, 200]
    resp = user_client.post("/limited/")
    assert resp.status_code == 429
    assert 1 <= int(resp["Retry-After"]) <= 60
    assert resp.json()["error"] == "rate_limited" and resp.json()["retry_after"] == int(resp["Retry-After"])


def test_token_users_are_counted_separately(user_client, client_for, other_user, still_clock):
    for _ in range(3):
        user_client.post("/limited/")
    assert user_client.post("/limited/").status_code == 429
    assert client_for(other_user).post("/limited/").status_code == 200
