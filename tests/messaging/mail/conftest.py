import datetime
from datetime import timedelta

import httpx
import pytest
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.utils import timezone
from google.auth import crypt

from tests.integrations.factories import ConnectionFactory

from .fake_gmail import FakeGmail, make_message

GMAIL = "https://www.googleapis.com/auth/gmail."
GRAPH = "https://graph.microsoft.test/v1.0"


def graph_expiry(days=2):
    """A subscription's expirationDateTime as Graph answers it, `days` from now (a fixed date is in the past some
    day, and a mailbox whose subscription has lapsed is no longer kept by push)."""
    return (timezone.now() + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def graph_left_out_folders(router):
    """Graph's answers for the folders an Outlook list without `label` leaves out (Deleted Items, Junk Email), which
    the hub asks for by their well-known names on a mailbox's first such list."""
    for name, folder_id in {"deleteditems": "AQMkDeletedItems=", "junkemail": "AQMkJunkEmail="}.items():
        router.get(url__regex=rf".*/me/mailFolders/{name}(\?.*)?$").mock(
            return_value=httpx.Response(200, json={"id": folder_id})
        )


ALL_GMAIL = [f"{GMAIL}modify", f"{GMAIL}send", f"{GMAIL}compose", f"{GMAIL}labels"]


@pytest.fixture
def gmail(settings):
    settings.APP_URL = "https://hub.example.com"
    settings.GOOGLE_CLIENT_ID = "google-client-id"
    settings.GOOGLE_CLIENT_SECRET = "google-client-secret"
    fake = FakeGmail()
    settings.GMAIL_API_BASE = fake.base
    yield fake
    fake.stop()


@pytest.fixture
def graph_settings(settings):
    settings.APP_URL = "https://hub.example.com"
    settings.MICROSOFT_CLIENT_ID = "ms-client-id"
    settings.MICROSOFT_CLIENT_SECRET = "ms-client-secret"
    settings.GRAPH_API_BASE = GRAPH
    return settings


def google_conn(user, *, scopes=ALL_GMAIL, **kw):
    return ConnectionFactory(
        owner=user,
        provider="google_oauth",
        account="ada@example.com",
        capabilities=["mail"],
        scopes=list(scopes),
        access_token="ya29.mail-token",
        expires_at=timezone.now() + timedelta(hours=1),
        **kw,
    )


def ms_conn(user, *, scopes=("Mail.ReadWrite", "Mail.Send", "User.Read"), account="grace@contoso.com", **kw):
    return ConnectionFactory(
        owner=user,
        provider="microsoft_oauth",
        account=account,
        capabilities=["mail"],
        scopes=list(scopes),
        access_token="eyJ-graph-token",
        expires_at=timezone.now() + timedelta(hours=1),
        **kw,
    )


@pytest.fixture
def eager():
    from config.celery import app as celery_app

    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True  # a failing task fails the test instead of vanishing
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous


# --- Gmail push: Google-style signing keys and certificates, served where google-auth fetches them ---

CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
AUDIENCE = "https://hub.example.com/webhooks/gmail/"
SERVICE_ACCOUNT = "gmail-push@hub-project.iam.gserviceaccount.com"


def signing_key(kid):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kid)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return crypt.RSASigner.from_string(pem_key, key_id=kid), cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def keys():
    return {"good": signing_key("kid-good"), "rogue": signing_key("kid-rogue")}


@pytest.fixture
def push(settings, keys, gmail):
    settings.GMAIL_PUSH_AUDIENCE = AUDIENCE
    settings.GMAIL_PUSH_SERVICE_ACCOUNT = SERVICE_ACCOUNT
    settings.GMAIL_PUBSUB_TOPIC = "projects/hub-project/topics/gmail"
    settings.GOOGLE_OIDC_CERTS_URL = CERTS_URL
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, CERTS_URL, json={"kid-good": keys["good"][1]})
        yield rsps


__all__ = ["make_message"]


@pytest.fixture
def short_gmail_timeout(settings, gmail):
    """Gmail's answer comes after the hub stopped waiting for it."""
    settings.PROVIDER_TIMEOUTS = {**settings.PROVIDER_TIMEOUTS, "gmail": {"web": 0.4, "task": 0.4}}
    gmail.hang = 1.0
    return gmail
