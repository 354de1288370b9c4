import base64
import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from .fake_idp import CLIENT_ID, FakeIdentityProvider

APP_URL = "https://hub.example.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_REVOKE_URL = "https://oauth2.googleapis.com/revoke"
GMAIL = "https://www.googleapis.com/auth/gmail."


@pytest.fixture
def google(settings):
    settings.APP_URL = APP_URL
    settings.GOOGLE_CLIENT_ID = "google-client-id.apps.googleusercontent.com"
    settings.GOOGLE_CLIENT_SECRET = "google-client-secret-value"
    return settings


@pytest.fixture
def eager():
    """Tasks run inline when enqueued (after commit), as a worker would run them."""
    from config.celery import app as celery_app

    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def idp(settings, tmp_path):
    from integrations.oauth.providers import microsoft

    server = FakeIdentityProvider(tmp_path)
    settings.APP_URL = APP_URL
    settings.MICROSOFT_CLIENT_ID = CLIENT_ID
    settings.MICROSOFT_CLIENT_SECRET = "ms-client-secret-value"
    settings.MICROSOFT_TENANT = "common"
    settings.MICROSOFT_AUTHORITY_HOST = server.base
    settings.OAUTH_CA_BUNDLE = str(server.cert_path)
    microsoft._http_caches.clear()
    yield server
    server.stop()
    microsoft._http_caches.clear()


def query(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def s256(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def google_id_token(email="ada@example.com", sub="1098765"):
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com",
        "aud": "x",
        "sub": sub,
        "email": email,
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, "unused-signing-key-for-tests-0123456789", algorithm="HS256")
