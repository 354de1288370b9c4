"""A request body key the API does not read is a 400 naming it, and the request does nothing.

Before, DRF dropped such keys: a token asked for with `ttl_days` lived the default 90 days, a search
for `"passengers": {"adult": 2}` priced one adult, a completion's `top_p` was not applied.
"""

import importlib
import inspect

import pytest
from rest_framework import serializers

from ai.models import AiRequest
from integrations.api.strict import RejectUnknownFields, StrictSerializer
from integrations.models import ApiToken, ProviderCall

# Serializers that read a query string or a relayed redirect stay lenient (see integrations.api.strict).
LENIENT = {
    "travel.serializers.SearchPageQuerySerializer": "query string",
    "travel.serializers.PlacesQuerySerializer": "query string",
    "scheduling.calendars.serializers.EventQuerySerializer": "query string",
    "scheduling.calendars.serializers.WindowSerializer": "query string",
    "messaging.mail.serializers.ThreadQuerySerializer": "query string",
    "integrations.oauth.serializers.CallbackSerializer": "the provider's redirect, relayed as it came",
    "documents.serializers.UploadSerializer": "documentation of the upload form only; the view reads the file",
}
MODULES = [
    "ai.serializers",
    "documents.serializers",
    "integrations.auth.serializers",
    "integrations.oauth.serializers",
    "integrations.serializers",
    "messaging.mail.serializers",
    "messaging.serializers",
    "payments.serializers",
    "privacy.serializers",
    "scheduling.calendars.serializers",
    "scheduling.serializers",
    "travel.serializers",
]


def _project_serializers():
    for name in MODULES:
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, serializers.BaseSerializer):
                yield f"{name}.{cls.__qualname__}", cls


def test_every_serializer_of_the_api_rejects_unknown_fields_but_the_named_lenient_ones():
    found = dict(_project_serializers())
    assert len(found) > 80  # the walk found the API's serializers, not an empty list
    lax = sorted(name for name, cls in found.items() if not issubclass(cls, RejectUnknownFields))
    assert lax == sorted(LENIENT)


@pytest.mark.django_db
class TestThroughTheApi:
    def test_a_misnamed_token_option_is_a_400_and_no_token_is_made(self, user, user_client):
        before = ApiToken.objects.count()
        response = user_client.post("/api/v1/auth/tokens/", {"name": "ci", "ttl_days": 7}, format="json")
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["error"] == "invalid" and "ttl_days" in body["detail"]
        assert body["fields"] == {"ttl_days": ["Unknown field; this object takes: expires_in_days, name."]}
        assert ApiToken.objects.count() == before

    def test_a_near_miss_names_the_field_meant(self, user_client):
        response = user_client.post("/api/v1/auth/tokens/", {"expires_in_day": 7}, format="json")
        assert response.status_code == 400
        assert response.json()["fields"] == {"expires_in_day": ["Unknown field; did you mean `expires_in_days`?"]}

    def test_a_nested_unknown_field_is_named_by_its_path_and_nothing_is_searched(self, user_client, settings):
        settings.DUFFEL_ACCESS_TOKEN = "duffel_test_x"
        search = {
            "slices": [{"origin": "LHR", "destination": "JFK", "departure_date": "2099-01-10", "cabin": "first"}],
            "passengers": {"adult": 2},
        }
        response = user_client.post("/api/v1/travel/searches/", search, format="json")
        assert response.status_code == 400, response.content
        fields = response.json()["fields"]
        assert fields["passengers.adult"] == ["Unknown field; did you mean `adults`?"]
        assert "slices[0].cabin" in fields
        assert not ProviderCall.objects.exists()

    def test_unknown_and_invalid_fields_are_reported_together(self, user_client):
        response = user_client.post(
            "/api/v1/ai/completions/", {"messages": "hi", "top_p": 0.9, "temperature": 9}, format="json"
        )
        assert response.status_code == 400
        assert set(response.json()["fields"]) == {"messages", "top_p", "temperature"}
        assert not AiRequest.objects.exists() and not ProviderCall.objects.exists()

    def test_a_form_post_with_the_csrf_token_is_not_refused_for_it(self, user_client):
        response = user_client.post("/api/v1/auth/tokens/", {"name": "form", "csrfmiddlewaretoken": "x"})
        assert response.status_code == 201, response.content

    def test_every_collection_route_with_a_json_body_refuses_an_unknown_field(self, staff_client):
        """Walks the schema: each POST/PUT/PATCH route without path parameters (the others need objects;
        the walk above covers their serializers)."""
        from drf_spectacular.generators import SchemaGenerator

        schema = SchemaGenerator().get_schema(request=None, public=True)
        tried = []
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                content = operation.get("requestBody", {}).get("content", {})
                if "{" in path or "application/json" not in content:
                    continue
                response = getattr(staff_client, method)(path, {"zz_not_a_field": 1}, format="json")
                assert response.status_code == 400, (method, path, response.content)
                assert "zz_not_a_field" in response.json()["fields"], (method, path, response.json())
                tried.append(path)
        assert len(tried) >= 15


def test_the_schema_says_request_bodies_take_no_other_properties():
    from drf_spectacular.generators import SchemaGenerator

    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert components["TokenCreateRequest"]["additionalProperties"] is False
    assert components["PassengersRequest"]["additionalProperties"] is False  # nested, too
    assert components["PatchedMeetingUpdateRequest"]["additionalProperties"] is False
    assert "additionalProperties" not in components["ApiToken"]  # an answer may grow fields
    assert "additionalProperties" not in components["CallbackRequest"]  # relayed as the provider sent it


def test_a_read_only_field_sent_back_as_read_is_ignored():
    class Thing(StrictSerializer):
        id = serializers.IntegerField(read_only=True)
        name = serializers.CharField()

    thing = Thing(data={"id": 5, "name": "a"})
    assert thing.is_valid(), thing.errors
    assert thing.validated_data == {"name": "a"}
    assert not Thing(data={"name": "a", "nam": "b"}).is_valid()
