"""Download links: hub-signed and expiring for local files; refused when expired, tampered, quarantined."""

import datetime as dt

import pytest
import time_machine

from documents.models import DocumentVersion

from .conftest import PDF
from .helpers import URL, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def document(user_client):
    return post(user_client, "Quarterly report é.pdf", PDF, "application/pdf").json()


def link(client, doc_id):
    resp = client.get(f"{URL}{doc_id}/download/")
    assert resp.status_code == 200, resp.json()
    return resp.json()


def path_of(url):
    return url.split("testserver", 1)[1]


def test_a_signed_link_serves_the_file_as_an_attachment_without_login(user_client, api_client, document, settings):
    body = link(user_client, document["id"])
    assert body["version"] == 1 and body["filename"] == "Quarterly report é.pdf"
    resp = api_client.get(path_of(body["url"]))
    assert resp.status_code == 200
    assert b"".join(resp.streaming_content) == PDF
    assert resp["Content-Type"] == "application/pdf"
    assert resp["Content-Disposition"].startswith("attachment;")
    assert "filename*=utf-8''Quarterly%20report%20%C3%A9.pdf" in resp["Content-Disposition"]
    assert resp["Cache-Control"] == "private, no-store"


def test_the_link_expires_after_its_ttl(user_client, api_client, document, settings):
    settings.DOCUMENT_URL_TTL_SECONDS = 60
    with time_machine.travel(dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC), tick=False):
        body = link(user_client, document["id"])
        assert body["expires_at"].startswith("2030-01-01T12:01:00")
    with time_machine.travel(dt.datetime(2030, 1, 1, 12, 0, 59, tzinfo=dt.UTC), tick=False):
        assert api_client.get(path_of(body["url"])).status_code == 200
    with time_machine.travel(dt.datetime(2030, 1, 1, 12, 1, 1, tzinfo=dt.UTC), tick=False):
        resp = api_client.get(path_of(body["url"]))
    assert resp.status_code == 403 and resp.json()["error"] == "link_expired"


@pytest.mark.parametrize("tamper", ["flip_signature", "other_version", "longer_expiry"])
def test_a_tampered_link_is_refused(user_client, api_client, document, tamper):
    from django.core import signing

    body = link(user_client, document["id"])
    path = path_of(body["url"])
    token = path.rstrip("/").rsplit("/", 1)[1]
    if tamper == "flip_signature":
        forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    else:
        payload = signing.loads(token, salt="documents.local-download")
        if tamper == "other_version":
            payload["v"] += 1
        else:
            payload["e"] += 10**6
        # re-signed with the wrong key: what an attacker without SECRET_KEY can do at best
        forged = signing.dumps(payload, key="not-the-secret-key-not-the-secret-key", salt="documents.local-download")
    resp = api_client.get(path.replace(token, forged))
    assert resp.status_code == 403 and resp.json()["error"] == "link_invalid"


def test_a_link_to_a_deleted_document_stops_working(user_client, api_client, document):
    body = link(user_client, document["id"])
    assert user_client.delete(f"{URL}{document['id']}/").status_code == 204
    assert api_client.get(path_of(body["url"])).status_code == 404


def test_with_require_scan_an_unscanned_file_is_not_served(user_client, api_client, document, settings):
    body = link(user_client, document["id"])
    settings.DOCUMENT_REQUIRE_SCAN = True
    resp = user_client.get(f"{URL}{document['id']}/download/")
    assert resp.status_code == 403 and resp.json()["error"] == "document_not_scanned"
    # and a link handed out earlier stops working too
    assert api_client.get(path_of(body["url"])).json()["error"] == "document_not_scanned"
    DocumentVersion.objects.update(scan_status="clean")
    assert user_client.get(f"{URL}{document['id']}/download/").status_code == 200


def test_another_users_document_is_a_404_everywhere(client_for, other_user, user_client, document):
    other = client_for(other_user)
    doc = document["id"]
    assert other.get(f"{URL}{doc}/").status_code == 404
    assert other.get(f"{URL}{doc}/download/").status_code == 404
    assert other.get(f"{URL}{doc}/versions/").status_code == 404
    assert other.post(f"{URL}{doc}/versions/1/restore/").status_code == 404
    assert other.delete(f"{URL}{doc}/").status_code == 404
    assert other.get(URL).json()["count"] == 0
    assert user_client.get(URL).json()["count"] == 1
