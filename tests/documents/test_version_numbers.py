"""Version numbers that name no version (0, negative, unknown, past the database's integers) are a JSON 404.

Versions are numbered from 1. The fault: version 0 in the path read as "no version given" and answered a link
to the current version's file; the other numbers guard the same answer on every way a version is addressed.
"""

import pytest

from documents.models import DocumentVersion

from .helpers import URL, post, post_version

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"  # past a PostgreSQL integer


@pytest.fixture
def document(user_client):
    doc = post(user_client, "plan.txt", b"version one\n", "text/plain").json()
    assert post_version(user_client, doc["id"], "plan-v2.txt", b"version two\n", "text/plain").status_code == 201
    return doc


def assert_json_404(response):
    assert response.status_code == 404, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("number", ["0", HUGE])
def test_downloading_a_version_number_that_names_no_version_is_a_json_404(user_client, document, number):
    assert_json_404(user_client.get(f"{URL}{document['id']}/versions/{number}/download/"))


@pytest.mark.parametrize("number", ["0", "-1", "3", HUGE])
def test_asking_the_download_for_a_version_that_does_not_exist_is_a_json_404(user_client, document, number):
    assert_json_404(user_client.get(f"{URL}{document['id']}/download/", {"version": number}))


@pytest.mark.parametrize("number", ["0", HUGE])
def test_restoring_a_version_number_that_names_no_version_is_a_json_404_and_changes_nothing(
    user_client, document, number
):
    assert_json_404(user_client.post(f"{URL}{document['id']}/versions/{number}/restore/"))
    assert user_client.get(f"{URL}{document['id']}/").json()["version"] == 2


def test_the_versions_that_exist_still_download(user_client, document):
    for number in (1, 2):
        response = user_client.get(f"{URL}{document['id']}/versions/{number}/download/")
        assert response.status_code == 200, response.content
    assert DocumentVersion.objects.filter(document_id=document["id"]).count() == 2
