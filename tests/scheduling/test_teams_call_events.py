"""Teams live call events: Graph's meetingCallEvents with the hub app's own token (client credentials through msal)
and rich notifications encrypted to the hub's certificate, decrypted and applied in any order."""

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import uuid
from types import SimpleNamespace

import jwt
import pytest
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from integrations.models import ProviderCall, WebhookEvent
from integrations.webhooks.graph_tokens import PUBLISHER_APP_ID
from scheduling import tasks
from scheduling.models import Meeting, MeetingAttendance, MeetingSubscription

from .helpers import URL, body

pytestmark = pytest.mark.django_db
HOOK = "/webhooks/teams/"
APP_URL = "https://hub.example.com"
IDP = "https://login.microsoftonline.test"
SCOPES = ["OnlineMeetingRecording.Read.All", "OnlineMeetingTranscript.Read.All", "OnlineMeetingArtifact.Read.All"]


@pytest.fixture(scope="module")
def keypair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "integration-hub call events")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SimpleNamespace(cert=cert, cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem=key_pem)


@pytest.fixture(scope="module")
def identity_platform():
    """The Microsoft identity platform's token signing key, as its JWKS publishes it (kid "idp-key-1")."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "idp-key-1", "use": "sig"}
    return SimpleNamespace(key=key, jwks={"keys": [jwk]})


def validation_token(identity_platform, tenant, *, key=None, kid="idp-key-1", **claims):
    """A validation token as the identity platform issues it to Graph's notification publisher for our app."""
    now = int(dt.datetime.now(dt.UTC).timestamp())
    body = {
        "aud": "ms-client-id",
        "iss": f"https://sts.windows.net/{tenant}/",
        "tid": tenant,
        "azp": PUBLISHER_APP_ID,
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        **claims,
    }
    return jwt.encode(body, key or identity_platform.key, algorithm="RS256", headers={"kid": kid})


def graph_encrypts(resource, cert, *, tamper=False):
    """What Graph sends in `encryptedContent`: AES-CBC under a one-time key (IV = its first 16 bytes), the key
    RSA-OAEP (SHA-1) under our certificate, an HMAC-SHA256 of the ciphertext."""
    key = os.urandom(32)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(resource).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    data = encryptor.update(plain) + encryptor.finalize()
    oaep = asymmetric.OAEP(mgf=asymmetric.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    signature = hmac.new(key, data + (b"x" if tamper else b""), hashlib.sha256).digest()
    return {
        "data": base64.b64encode(data).decode(),
        "dataKey": base64.b64encode(cert.public_key().encrypt(key, oaep)).decode(),
        "dataSignature": base64.b64encode(signature).decode(),
        "encryptionCertificateId": "hub-" + cert.fingerprint(hashes.SHA1()).hex(),
        "encryptionCertificateThumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),
    }


@pytest.fixture
def app_only(settings, keypair, graph, eager, identity_platform):
    tenant = str(uuid.uuid4())  # a tenant per test: the app token cache never carries over
    settings.APP_URL = APP_URL
    settings.MICROSOFT_APP_TENANT_ID = tenant
    settings.MICROSOFT_AUTHORITY_HOST = IDP
    settings.TEAMS_CALL_EVENTS_CERTIFICATE = keypair.cert_pem
    settings.TEAMS_CALL_EVENTS_PRIVATE_KEY = keypair.key_pem
    base = f"{IDP}/{tenant}"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as idp:
        idp.get(
            f"{base}/v2.0/.well-known/openid-configuration",
            json={
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
            },
        )
        idp.post(
            f"{base}/oauth2/v2.0/token",
            json={"token_type": "Bearer", "expires_in": 3599, "access_token": graph.app_token},
        )
        keys = idp.get(f"{IDP}/common/discovery/v2.0/keys", json=identity_platform.jwks)
        yield SimpleNamespace(tenant=tenant, idp=idp, keypair=keypair, keys=keys, platform=identity_platform)


@pytest.fixture
def organizer(teams_conn, app_only):
    teams_conn.scopes += SCOPES
    teams_conn.capabilities += ["meeting_records", "meeting_attendance"]
    teams_conn.account_id = f"0a1b2c3d-0000-4000-8000-00000000beef.{app_only.tenant}"
    teams_conn.save()
    return teams_conn


@pytest.fixture
def create(user_client, django_capture_on_commit_callbacks):
    def make():
        with django_capture_on_commit_callbacks(execute=True):
            response = user_client.post(URL, body("teams"), format="json")
        assert response.status_code == 201, response.json()
        return Meeting.objects.get(pk=response.json()["id"])

    return make


@pytest.fixture
def event(client, app_only, django_capture_on_commit_callbacks):
    counter = iter(range(1, 10_000))

    def send(meeting, event_type, at, participants=None, *, tamper=False, client_state=None, tokens=None):
        sub = MeetingSubscription.objects.get(meeting=meeting, kind="graph_call_events")
        resource = {
            "@odata.type": "#microsoft.graph.callevent",
            "id": f"notification-{next(counter)}",
            "eventType": event_type,
            "eventDateTime": at,
        }
        if participants is not None:
            resource["participants@delta"] = participants
        item = {
            "subscriptionId": sub.external_id,
            "clientState": client_state or sub.client_state,
            "changeType": "updated",
            "tenantId": app_only.tenant,
            "resource": sub.resource,
            "subscriptionExpirationDateTime": "2030-01-12T10:00:00Z",
            "resourceData": {
                "@odata.type": "#microsoft.graph.callevent",
                "@odata.id": sub.resource,
                "id": resource["id"],
            },
            "encryptedContent": graph_encrypts(resource, app_only.keypair.cert, tamper=tamper),
        }
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                HOOK,
                json.dumps(
                    {
                        "value": [item],
                        "validationTokens": [validation_token(app_only.platform, app_only.tenant)]
                        if tokens is None
                        else tokens,
                    }
                ),
                content_type="application/json",
            )

    return send


def joined(oid, name, *, lobby=False):
    return {"id": f"p-{oid}", "isInLobby": lobby, "info": {"identity": {"user": {"id": oid, "displayName": name}}}}


def left(oid, name):
    return {**joined(oid, name), "removedState": {"reason": "Participant has left the meeting call."}}


def test_the_meeting_subscribes_to_its_call_events_with_the_apps_own_token(organizer, graph, create, app_only):
    meeting = create()
    sub = MeetingSubscription.objects.get(meeting=meeting, kind="graph_call_events")
    at_graph = graph.subscriptions[sub.external_id]
    assert at_graph["_endpoint"] == "beta" and at_graph["changeType"] == "updated"
    assert at_graph["resource"] == (
        "communications/onlineMeetings(joinWebUrl='https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join%2F19%253a"
        "meeting_1%2540thread.v2%2F0')/meetingCallEvents"
    )
    der = app_only.keypair.cert.public_bytes(serialization.Encoding.DER)
    assert (
        at_graph["includeResourceData"] is True and at_graph["encryptionCertificate"] == base64.b64encode(der).decode()
    )
    assert at_graph["clientState"] == sub.client_state and at_graph["notificationUrl"] == f"{APP_URL}{HOOK}"
    # one client-credentials token request (in the call log), then the cached token
    assert ProviderCall.objects.filter(provider="microsoft_oauth", operation="token.app_only").count() == 1
    token_calls = [c for c in app_only.idp.calls if c.request.url.endswith("/oauth2/v2.0/token")]
    assert len(token_calls) == 1 and "grant_type=client_credentials" in token_calls[0].request.body
    assert "https%3A%2F%2Fgraph.microsoft.com%2F.default" in token_calls[0].request.body
    assert set(MeetingSubscription.objects.filter(meeting=meeting).values_list("kind", flat=True)) == {
        "graph_recordings",
        "graph_transcripts",
        "graph_call_events",
    }


def test_a_call_events_create_that_timed_out_leaves_one_subscription_the_hub_knows(
    organizer, graph, user_client, django_capture_on_commit_callbacks
):
    """Graph made the call events subscription (the app's own) but its answer never came: the retry deletes it
    before it makes another. The app's list spans the tenant: other meetings' subscriptions stay."""
    made = user_client.post(URL, body("teams"), format="json")  # its subscribe task is run below
    meeting = Meeting.objects.get(pk=made.json()["id"])
    # Another organizer's meeting in the tenant, its create still out: not this meeting's to touch.
    graph.subscriptions["sub-elsewhere"] = {
        "id": "sub-elsewhere",
        "resource": "communications/onlineMeetings(joinWebUrl='https%3A%2F%2Fother')/meetingCallEvents",
        "notificationUrl": f"{APP_URL}{HOOK}",
        "_endpoint": "beta",
    }

    def lose_the_apps_answer():
        if graph.requests[-1].url.path.startswith("/beta/"):
            graph.while_subscribing, graph.lose_next = None, ["POST"]

    graph.while_subscribing = lose_the_apps_answer
    with django_capture_on_commit_callbacks(execute=True):
        tasks.teams_subscribe_task.delay(meeting.pk)  # timed out, then retried (at once: eager)
    creates = ProviderCall.objects.filter(operation="subscription.create", scope__startswith="app:").order_by("pk")
    assert list(creates.values_list("outcome", flat=True)) == ["timeout", "ok"]
    subs = MeetingSubscription.objects.filter(meeting=meeting)
    assert sorted(graph.subscriptions) == sorted(["sub-elsewhere", *subs.values_list("external_id", flat=True)])
    sub = subs.get(kind="graph_call_events")
    assert graph.subscriptions[sub.external_id]["clientState"] == sub.client_state


def test_an_organizer_of_another_tenant_gets_no_call_events(organizer, graph, create):
    organizer.account_id = "0a1b2c3d-0000-4000-8000-00000000beef.11111111-2222-4333-8444-555555555555"
    organizer.save()
    meeting = create()
    assert not MeetingSubscription.objects.filter(meeting=meeting, kind="graph_call_events").exists()
    assert not ProviderCall.objects.filter(operation="token.app_only").exists()


def test_call_started_and_ended_move_the_meeting_with_their_own_times_in_any_order(organizer, graph, create, event):
    meeting = create()
    assert event(meeting, "callEnded", "2030-01-10T15:41:00Z").status_code == 200
    assert event(meeting, "callStarted", "2030-01-10T15:00:00Z").status_code == 200  # late: never reopens
    meeting.refresh_from_db()
    assert meeting.status == "ended" and meeting.ended_at == dt.datetime(2030, 1, 10, 15, 41, tzinfo=dt.UTC)
    assert event(meeting, "callStarted", "2030-01-10T16:00:00Z").status_code == 200  # a real restart
    meeting.refresh_from_db()
    assert meeting.status == "started" and meeting.started_at.hour == 16


def test_roster_updates_book_joins_and_leaves_by_identity_twice_and_out_of_order(organizer, graph, create, event):
    meeting = create()
    ana, bo = ("f3ce5e01-0724-43c7-ae4d-80ca18703a96", "Ana Lima"), ("e98eb11c-8385-445e-8b19-4a2f169ac5bc", "Bo")
    event(meeting, "rosterUpdated", "2030-01-10T15:30:00Z", [left(*ana)])  # her leave arrives first
    event(meeting, "rosterUpdated", "2030-01-10T15:02:00Z", [joined(*ana), joined(*bo, lobby=True)])
    event(meeting, "rosterUpdated", "2030-01-10T15:05:00Z", [joined(*ana), joined(*bo)])  # she is still there
    event(meeting, "rosterUpdated", "2030-01-10T15:30:00Z", [left(*ana)])  # Graph repeats her leave
    event(meeting, "rosterUpdated", "2030-01-10T15:35:00Z", [joined(*ana)])  # and she comes back
    rows = [(a.participant_key, a.name, a.joined_at.minute, a.left_at and a.left_at.minute) for a in MeetingAttendance.objects.all()]  # fmt: skip
    assert rows == [(ana[0], "Ana Lima", 2, 30), (bo[0], "Bo", 5, None), (ana[0], "Ana Lima", 35, None)]
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_a_leave_after_its_join_closes_the_stretch_and_its_repeat_changes_nothing(organizer, graph, create, event):
    meeting = create()
    ana = ("f3ce5e01-0724-43c7-ae4d-80ca18703a96", "Ana Lima")
    event(meeting, "rosterUpdated", "2030-01-10T15:02:00Z", [joined(*ana)])
    event(meeting, "rosterUpdated", "2030-01-10T15:30:00Z", [left(*ana)])  # in the order Graph sends them
    event(meeting, "rosterUpdated", "2030-01-10T15:30:00Z", [left(*ana)])  # and once more
    rows = [(a.joined_at.minute, a.left_at and a.left_at.minute) for a in MeetingAttendance.objects.all()]
    assert rows == [(2, 30)]
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_call_ended_reads_the_attendance_report_onto_the_live_rows(organizer, graph, create, event):
    meeting = create()
    ana = ("f3ce5e01-0724-43c7-ae4d-80ca18703a96", "Ana Lima")
    event(meeting, "rosterUpdated", "2030-01-10T15:02:00.4Z", [joined(*ana)])
    graph.attendance[meeting.external_uuid] = [
        {"id": "rep-1", "meetingStartDateTime": "2030-01-10T15:00:00Z", "meetingEndDateTime": "2030-01-10T15:41:00Z",
         "attendanceRecords": [{"emailAddress": "ana@contoso.com", "identity": {"id": ana[0], "displayName": ana[1]},
                                "attendanceIntervals": [{"joinDateTime": "2030-01-10T15:02:00Z",
                                                         "leaveDateTime": "2030-01-10T15:39:00Z"}]}]}
    ]  # fmt: skip
    event(meeting, "callEnded", "2030-01-10T15:41:00Z")
    [row] = MeetingAttendance.objects.all()  # the report's join a moment earlier is the same stretch
    assert (row.joined_at.second, row.joined_at.microsecond, row.left_at.minute) == (0, 400000, 39)
    assert row.email == "" or row.email == "ana@contoso.com"
    assert Meeting.objects.get(pk=meeting.pk).status == "ended"


@pytest.mark.parametrize("bad", ["tampered", "wrong client state"])
def test_a_tampered_or_unverified_call_event_is_refused_and_nothing_is_stored(organizer, graph, create, event, bad):
    meeting = create()
    if bad == "tampered":
        response = event(meeting, "callStarted", "2030-01-10T15:00:00Z", tamper=True)
        assert response.status_code == 400 and response.json()["error"] == "undecryptable"
    else:
        response = event(meeting, "callStarted", "2030-01-10T15:00:00Z", client_state="not-the-one-" + "z" * 60)
        assert response.status_code == 403
    assert not WebhookEvent.objects.exists() and Meeting.objects.get(pk=meeting.pk).status == "scheduled"


def test_cancelling_deletes_the_call_events_subscription_with_the_apps_token(
    organizer, graph, create, user_client, django_capture_on_commit_callbacks
):
    meeting = create()
    assert len(graph.subscriptions) == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert user_client.delete(f"{URL}{meeting.pk}/").status_code == 200
    assert graph.subscriptions == {}
    deletes = [r for r in graph.requests if r.method == "DELETE" and "/subscriptions/" in r.url.path]
    assert sorted(r.url.path.split("/")[1] for r in deletes) == ["beta", "v1.0", "v1.0"]


def test_the_providers_endpoint_offers_live_events_once_configured(user_client, app_only):
    teams = {r["provider"]: r for r in user_client.get("/api/v1/scheduling/providers/").json()}["teams"]
    assert "lifecycle_webhooks" in teams["capabilities"] and teams["not_configured"] == {}


def _other_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    "case",
    [
        "no tokens",
        "signed by another key",
        "an unknown key id",
        "expired",
        "for another app",
        "not issued to Graph's publisher",
        "another tenant's",
        "an issuer that is not its tenant's",
        "not a JWT",
        "one good, one bad",
    ],
)
def test_a_call_event_whose_validation_tokens_do_not_verify_is_refused_and_nothing_is_stored(
    organizer, graph, create, event, app_only, case
):
    meeting = create()
    platform, tenant = app_only.platform, app_only.tenant
    good = validation_token(platform, tenant)
    tokens = {
        "no tokens": [],
        "signed by another key": [validation_token(platform, tenant, key=_other_key())],
        "an unknown key id": [validation_token(platform, tenant, key=_other_key(), kid="idp-key-9")],
        "expired": [validation_token(platform, tenant, exp=int(dt.datetime.now(dt.UTC).timestamp()) - 60)],
        "for another app": [validation_token(platform, tenant, aud="someone-elses-app")],
        "not issued to Graph's publisher": [validation_token(platform, tenant, azp=str(uuid.uuid4()))],
        "another tenant's": [validation_token(platform, str(uuid.uuid4()))],
        "an issuer that is not its tenant's": [
            validation_token(platform, tenant, iss=f"https://sts.windows.net/{uuid.uuid4()}/")
        ],
        "not a JWT": ["eyJ.x.y"],
        "one good, one bad": [good, validation_token(platform, tenant, aud="someone-elses-app")],
    }[case]
    response = event(meeting, "callStarted", "2030-01-10T15:00:00Z", tokens=tokens)
    assert response.status_code == 403, response.json()
    assert response.json()["error"] == ("missing_signature" if case == "no tokens" else "bad_signature")
    assert not WebhookEvent.objects.exists() and Meeting.objects.get(pk=meeting.pk).status == "scheduled"


def test_the_signing_keys_are_read_once_through_the_gateway_and_again_for_a_new_key(
    organizer, graph, create, event, app_only
):
    meeting = create()
    assert event(meeting, "callStarted", "2030-01-10T15:00:00Z").status_code == 200
    assert event(meeting, "rosterUpdated", "2030-01-10T15:01:00Z", []).status_code == 200
    assert app_only.keys.call_count == 1  # cached
    assert ProviderCall.objects.filter(provider="microsoft_oauth", operation="notifications.keys").count() == 1
    # Microsoft rolls a new key over: a token naming it fetches the keys again (once, not per delivery).
    rolled = _other_key()
    jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(rolled.public_key(), as_dict=True), "kid": "idp-key-2"}
    app_only.idp.replace(
        responses.GET, f"{IDP}/common/discovery/v2.0/keys", json={"keys": [*app_only.platform.jwks["keys"], jwk]}
    )
    from django.core.cache import cache

    from integrations.webhooks.graph_tokens import KEYS_CACHE_KEY

    cache.set(KEYS_CACHE_KEY, {**cache.get(KEYS_CACHE_KEY), "at": 0})  # fetched long enough ago
    token = validation_token(app_only.platform, app_only.tenant, key=rolled, kid="idp-key-2")
    assert event(meeting, "callEnded", "2030-01-10T15:41:00Z", tokens=[token]).status_code == 200
    assert Meeting.objects.get(pk=meeting.pk).status == "ended"
    # Made-up key ids right after a fetch do not fetch again.
    made_up = validation_token(app_only.platform, app_only.tenant, key=_other_key(), kid="idp-key-777")
    assert event(meeting, "callStarted", "2030-01-10T16:00:00Z", tokens=[made_up]).status_code == 403
    assert ProviderCall.objects.filter(provider="microsoft_oauth", operation="notifications.keys").count() == 2


def test_a_call_event_waits_for_the_signing_keys_when_they_cannot_be_read(organizer, graph, create, event, app_only):
    meeting = create()
    app_only.idp.replace(responses.GET, f"{IDP}/common/discovery/v2.0/keys", status=503)
    response = event(meeting, "callStarted", "2030-01-10T15:00:00Z")
    assert response.status_code == 503 and response.json()["error"] == "certificates_unavailable"
    assert not WebhookEvent.objects.exists()  # Graph delivers it again
