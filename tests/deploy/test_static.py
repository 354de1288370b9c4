"""Static files under the ASGI server: WhiteNoise serves collectstatic's hashed, compressed files."""

import gzip
import warnings

import pytest
from asgiref.sync import async_to_sync
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command
from django.test import AsyncClient, override_settings

MANIFEST = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """collectstatic with the production storage into a fresh STATIC_ROOT (what the image does), once."""
    root = tmp_path_factory.mktemp("staticfiles")
    with override_settings(STATIC_ROOT=root, STORAGES=MANIFEST, DEBUG=False):
        call_command("collectstatic", "--noinput", "--verbosity", "0")
        yield root


@async_to_sync
async def asgi_get(url, **headers):
    """A request through Django's ASGI handler, its streamed body read as the server would."""
    with warnings.catch_warnings():
        # Django warns when an ASGI response streams a sync iterator; the middleware must avoid that.
        warnings.simplefilter("error")
        response = await AsyncClient().get(url, headers=headers)
        body = b"".join([chunk async for chunk in response]) if response.streaming else response.content
    return response, body


def test_admin_css_is_served_hashed_compressed_and_cached_for_a_year(collected):
    url = staticfiles_storage.url("admin/css/base.css")
    assert url != "/static/admin/css/base.css"  # a content hash in the name

    response, body = asgi_get(url, accept_encoding="gzip")

    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "immutable" in response["Cache-Control"]
    assert response.is_async
    hashed_name = url.removeprefix("/static/")
    assert gzip.decompress(body) == (collected / hashed_name).read_bytes()


def test_a_byte_range_streams_only_that_range(collected):
    url = staticfiles_storage.url("admin/css/base.css")
    response, body = asgi_get(url, range="bytes=0-99")
    assert response.status_code == 206
    assert len(body) == 100


def test_an_unknown_static_path_falls_through_to_the_404(collected):
    response, _ = asgi_get("/static/admin/css/nope.css")
    assert response.status_code == 404


def test_under_wsgi_the_file_response_is_left_to_the_server(collected, client):
    response = client.get(staticfiles_storage.url("admin/css/base.css"))
    assert response.status_code == 200
    assert not response.is_async
