"""Privacy test kit: a user with data in every app (factories), Twilio over `responses`, S3 on moto."""

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import boto3
import pytest
import responses
from django.utils import timezone
from moto import mock_aws

from ai.models import AiBudget, AiRequest, AiSpend, AiUsageMonthly
from config.celery import app as celery_app
from documents import providers as documents_providers
from documents.models import DocumentVersion
from integrations.auth.tokens import token_create
from integrations.models import Budget, IdempotencyRecord, OAuthState, ProviderCall, UsageRollup
from messaging.mail.models import Mailbox, MailMessage
from messaging.models import Conversation
from scheduling.models import (
    Calendar,
    CalendarEvent,
    Meeting,
    MeetingAttendance,
    MeetingCreate,
    MeetingParticipant,
    MeetingRecording,
    MeetingSubscription,
    SchedulingPreference,
)
from scheduling.recordings import storage_prefix_for
from tests.documents.factories import DocumentFactory, DocumentVersionFactory
from tests.integrations.factories import ConnectionFactory, WebhookEventFactory
from tests.messaging.conftest import ACCOUNT_SID, AUTH_TOKEN, HUB_NUMBER
from tests.messaging.factories import CallFactory, SmsFactory
from tests.payments import stripe_fakes
from tests.payments.factories import CustomerFactory, RefundFactory, SubscriptionFactory
from tests.scheduling.factories import CalendarFactory, MeetingFactory
from tests.travel.factories import WatchFactory
from travel.models import PricePoint

BUCKET = "hub-documents"
API = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}"


@pytest.fixture(autouse=True)
def privacy_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PRIVACY_EXPORT_ROOT = tmp_path / "exports"
    settings.S3_BUCKET = ""
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_PHONE_NUMBER = HUB_NUMBER
    settings.TWILIO_API_BASE = ""
    settings.GOOGLE_CLIENT_ID = "google-client-id.apps.googleusercontent.com"
    settings.GOOGLE_CLIENT_SECRET = "google-client-secret-value"
    settings.STRIPE_SECRET_KEY = stripe_fakes.SECRET_KEY
    settings.STRIPE_API_BASE = ""
    fast = {"base": 0.01, "cap": 0.01, "max_retries": 2}
    settings.PROVIDER_RETRY = {
        **settings.PROVIDER_RETRY,
        "twilio": fast,
        "s3": fast,
        "google_oauth": fast,
        "stripe": fast,
    }
    documents_providers.reset()
    yield settings
    documents_providers.reset()


@pytest.fixture
def eager():
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def s3(settings):
    with mock_aws():
        settings.S3_BUCKET = BUCKET
        settings.AWS_ACCESS_KEY_ID = "AKIATESTTESTTESTTEST"
        settings.AWS_SECRET_ACCESS_KEY = "test-secret-key"
        settings.AWS_S3_REGION_NAME = "us-east-1"
        documents_providers.reset()
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client
        documents_providers.reset()


@dataclass
class Holdings:
    """What `populate` gave a user, and strings that must never survive their erasure."""

    user: object
    files: dict = field(default_factory=dict)  # storage_key -> bytes
    recordings: list = field(default_factory=list)  # (recording sid, transcription sid, media bytes)
    messages: dict = field(default_factory=dict)  # Twilio's Message records of the user's SMS: sid -> body
    markers: set = field(default_factory=set)
    events: list = field(default_factory=list)
    subscriptions: list = field(default_factory=list)  # live Stripe subscription ids
    recording_copies: dict = field(default_factory=dict)  # storage_key -> bytes (meeting recordings the hub keeps)
    # Sync cursors and push secrets: never exported, and gone with the user like every marker.
    secrets: set = field(default_factory=set)


def _store(key, content):
    """Put `content` where the current backend keeps documents (S3 on moto, or MEDIA_ROOT)."""
    import io

    backend = documents_providers.current_backend()
    backend.save(key, io.BytesIO(content), content_type="text/plain", size=len(content))
    return backend.name


def populate(user, *, tag):
    """Rows in every app for `user` (factories), each carrying `tag` somewhere a leak would show."""
    h = Holdings(user=user)
    user.first_name, user.last_name = f"Ada{tag}", f"Lovelace{tag}"
    user.save()
    h.markers |= {user.username, user.email, f"Ada{tag}", f"Lovelace{tag}"}
    # payments
    customer = CustomerFactory(user=user, external_id=f"cus_{tag}")
    refund = RefundFactory(
        payment__invoice__owner=user,
        payment__invoice__description=f"Invoice text {tag}",
        payment__payment_intent_id=f"pi_{tag}",
        payment__failure_message=f"card of {tag} declined",
    )
    SubscriptionFactory(owner=user, external_id=f"sub_{tag}", last_error=f"sub error {tag}")
    h.subscriptions = [f"sub_{tag}"]
    h.markers |= {f"Invoice text {tag}", f"card of {tag} declined", f"sub error {tag}"}
    # documents: two versions of one document, one of another
    for d in range(2):
        doc = DocumentFactory(owner=user)
        for n in range(1, 3 - d):
            content = f"document {d} version {n} of {tag}\n".encode() * 10
            key = f"documents/{tag}/{d}-{n}-{hashlib.md5(content).hexdigest()}"
            backend = _store(key, content)
            v = DocumentVersionFactory(
                document=doc,
                number=n,
                filename=f"secret-{tag}-{d}-{n}.txt",
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                backend=backend,
                storage_key=key,
            )
            h.files[key] = content
            h.markers.add(v.filename)
        doc.current_version = v
        doc.save()
    # messaging
    conv = Conversation.objects.create(owner=user, remote_number="+15005550199")
    sms = SmsFactory(
        owner=user, conversation=conv, status="delivered", body=f"sms body {tag}", external_id=f"SM{tag:0>32}"[:34]
    )
    h.messages[sms.external_id] = sms.body
    SmsFactory(owner=user, body=f"queued sms {tag}")  # still queued: erasure cancels it at once
    rec_sid, tr_sid = f"RE{tag:0>32}"[:34], f"TR{tag:0>32}"[:34]
    CallFactory(
        owner=user,
        status="completed",
        say=f"call script {tag}",
        external_id=f"CA{tag:0>32}"[:34],
        recording_sid=rec_sid,
        recording_url=f"{API}/Recordings/{rec_sid}",
        transcription_sid=tr_sid,
        transcript=f"transcript {tag}",
    )
    h.recordings.append((rec_sid, tr_sid, f"ID3 mp3 of {tag}".encode() * 100))
    h.markers |= {f"sms body {tag}", f"queued sms {tag}", f"call script {tag}", f"transcript {tag}"}
    # integrations: a Google connection with a mailbox cache, API token, calls, roll-ups, budget...
    conn = ConnectionFactory(owner=user, account=f"{tag}@gmail.example", refresh_token=f"1//refresh-{tag}")
    mailbox = Mailbox.objects.create(connection=conn, history_id="1")
    MailMessage.objects.create(mailbox=mailbox, external_id=f"m-{tag}", subject=f"mail subject {tag}")
    OAuthState.objects.create(
        state=f"state-{tag}", owner=user, provider="google_oauth", expires_at=timezone.now() + dt.timedelta(minutes=5)
    )
    token_create(user=user, name=f"token {tag}", expires_in_days=30)
    IdempotencyRecord.objects.create(owner=user, key=f"idem-{tag}", fingerprint="0" * 64)
    Budget.objects.create(provider="twilio", owner=user, monthly_limit_usd=10)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for i in range(3):
        ProviderCall.objects.create(
            provider="openai",
            operation="chat.completions",
            owner=user,
            outcome="ok",
            cost_usd="0.0079",
            error_message=f"error about {tag}" if i == 0 else "",
        )
    UsageRollup.objects.create(hour=hour, provider="openai", owner=user, calls=3, cost_usd="0.0237")
    h.markers |= {conn.account, f"1//refresh-{tag}", f"mail subject {tag}", f"token {tag}", f"error about {tag}"}
    # ai
    AiRequest.objects.create(
        owner=user,
        outcome="ok",
        provider="openai",
        model="gpt-4o-mini",
        prompt=[{"role": "user", "content": f"prompt {tag}"}],
        response_text=f"answer {tag}",
        cost_usd="0.0100",
    )
    month = timezone.now().date().replace(day=1)
    AiUsageMonthly.objects.create(owner=user, month=month, provider="openai", model="gpt-4o-mini", requests=1)
    AiSpend.objects.create(owner=user, month=month, spent_usd="0.0100")
    AiBudget.objects.create(owner=user, monthly_limit_usd=5, note=f"budget note {tag}")
    h.markers |= {f"prompt {tag}", f"answer {tag}", f"budget note {tag}"}
    # travel, scheduling
    watch = WatchFactory(owner=user)
    PricePoint.objects.create(watch=watch, checked_at=timezone.now(), departure_date=watch.departure_date, price=100)
    meeting = MeetingFactory(owner=user, topic=f"meeting {tag}", external_id=f"9{abs(hash(tag)) % 10**9}")
    guest = MeetingParticipant.objects.create(meeting=meeting, email=f"guest-{tag}@example.org", name=f"Guest {tag}")
    # the records of two creates made with an Idempotency-Key: one that made the meeting, one whose outcome is unknown
    MeetingCreate.objects.create(owner=user, provider="zoom", create_id=f"create-made-{tag}", meeting=meeting)
    MeetingCreate.objects.create(owner=user, provider="webex", create_id=f"create-lost-{tag}", doubt="ambiguous")
    MeetingAttendance.objects.create(
        meeting=meeting,
        participant=guest,
        participant_key=f"zoom-uuid-{tag}",
        email=guest.email,
        name=f"Attendee {tag}",
        joined_at=timezone.now(),
    )
    SchedulingPreference.objects.create(owner=user, copy_recordings=True)
    MeetingRecording.objects.create(meeting=meeting, external_id=f"rec-{tag}", download_url="https://zoom.us/rec/x")
    # a recording the user asked the hub to keep: a copy in the hub's storage, under the user's own folder
    copy = f"meeting recording of {tag}".encode() * 50
    copy_key = f"{storage_prefix_for(user.pk)}copy-{tag}"
    MeetingRecording.objects.create(
        meeting=meeting,
        external_id=f"rec-copied-{tag}",
        file_type="MP4",
        download_url="https://zoom.us/rec/y",
        copy_status="copied",
        storage_backend=_store(copy_key, copy),
        storage_key=copy_key,
        stored_bytes=len(copy),
    )
    h.recording_copies[copy_key] = copy
    # ... and one an interrupted copy left behind without a row that names it
    stray_key = f"{storage_prefix_for(user.pk)}stray-{tag}"
    _store(stray_key, b"half a recording")
    h.recording_copies[stray_key] = b"half a recording"
    h.markers |= {f"meeting {tag}", f"guest-{tag}@example.org", f"Attendee {tag}", f"zoom-uuid-{tag}"}
    # a Teams meeting's lifecycle subscription at Graph (its clientState signs the notifications)
    teams = MeetingFactory(owner=user, provider=Meeting.Provider.TEAMS, topic=f"teams meeting {tag}")
    MeetingSubscription.objects.create(
        meeting=teams,
        provider=Meeting.Provider.TEAMS,
        kind="graph_recordings",
        external_id=f"sub-teams-{tag}",
        resource=f"communications/onlineMeetings/{tag}/recordings",
        expires_at=timezone.now() + dt.timedelta(days=2),
        client_state=f"meeting-client-state-{tag}",
        raw={"id": f"sub-teams-{tag}", "notificationUrl": "https://hub.example/webhooks/teams/"},
    )
    h.markers |= {f"teams meeting {tag}", f"sub-teams-{tag}"}
    h.secrets |= {f"meeting-client-state-{tag}"}
    # calendars synced from the user's Google connection (a sync token) and a Microsoft one (a delta link and
    # the Graph subscription's clientState); no push channel open, so disconnecting calls no provider
    google_calendar = CalendarFactory(
        connection=conn, name=f"calendar {tag}", external_id=f"cal-{tag}@example.org", sync_token=f"sync-token-{tag}"
    )
    outlook = ConnectionFactory(
        owner=user, provider="microsoft_oauth", account=f"{tag}@outlook.example", capabilities=["calendar"]
    )
    outlook_calendar = CalendarFactory(
        connection=outlook,
        kind=Calendar.Kind.MICROSOFT,
        name=f"outlook calendar {tag}",
        external_id=f"AAMk-{tag}",
        delta_link=f"https://graph.microsoft.com/v1.0/me/calendars/AAMk-{tag}/events/delta?$deltatoken=delta-{tag}",
        client_state=f"calendar-client-state-{tag}",
    )
    for calendar in (google_calendar, outlook_calendar):
        CalendarEvent.objects.create(
            calendar=calendar,
            external_id=f"evt-{calendar.kind}-{tag}",
            title=f"{calendar.kind} event {tag}",
            description=f"agenda of {tag}",
            location=f"room of {tag}",
            start=timezone.now() + dt.timedelta(days=1),
            end=timezone.now() + dt.timedelta(days=1, hours=1),
            attendees=[{"email": f"colleague-{tag}@example.org", "name": f"Colleague {tag}"}],
            raw={"id": f"evt-{calendar.kind}-{tag}", "summary": f"{calendar.kind} event {tag}"},
        )
    h.markers |= {f"calendar {tag}", f"outlook calendar {tag}", f"google event {tag}", f"microsoft event {tag}"}
    h.markers |= {f"agenda of {tag}", f"colleague-{tag}@example.org", outlook.account}
    h.secrets |= {f"sync-token-{tag}", f"delta-{tag}", f"calendar-client-state-{tag}"}
    # webhooks that name the user's objects
    h.events.append(
        WebhookEventFactory(
            provider="stripe",
            event_id=f"evt_{tag}",
            type="payment_intent.succeeded",
            payload={"data": {"object": {"id": f"pi_{tag}", "receipt_email": user.email}}},
            object_key=f"pi_{tag}",
        )
    )
    h.events.append(
        WebhookEventFactory(
            provider="twilio",
            event_id=f"tw_{tag}",
            type="sms.status",
            payload={"MessageSid": f"SM{tag:0>32}"[:34], "Body": f"inbound text {tag}"},
        )
    )
    h.markers.add(f"inbound text {tag}")
    h.customer, h.refund = customer, refund
    return h


def stripe_cancels(http, holdings, status=200):
    """Stripe answers the cancel of each live subscription `populate` gave the user."""
    for sub_id in holdings.subscriptions:
        body = stripe_fakes.subscription(sub_id, customer=holdings.customer.external_id, status="canceled")
        http.add(responses.DELETE, f"{stripe_fakes.API}/v1/subscriptions/{sub_id}", json=body, status=status)


def twilio_media(http, holdings):
    for rec_sid, _, media in holdings.recordings:
        http.add(responses.GET, f"{API}/Recordings/{rec_sid}.mp3", body=media, content_type="audio/mpeg")


def twilio_messages(http, bodies):
    """Twilio's Message records (sid -> body): POST with an empty Body redacts; an unknown sid answers 404."""

    def update(request):
        sid = re.search(r"/Messages/(\w+)\.json", request.url)[1]
        if sid not in bodies:
            return 404, {}, json.dumps({"code": 20404, "message": "not found", "status": 404})
        form = parse_qs(request.body or "", keep_blank_values=True)
        assert form == {"Body": [""]}, form  # a redaction only: nothing else changes on the record
        bodies[sid] = ""
        record = {"sid": sid, "body": "", "status": "delivered", "price": "-0.00790", "price_unit": "USD"}
        return 200, {}, json.dumps(record)

    http.add_callback(responses.POST, re.compile(rf"{re.escape(API)}/Messages/\w+\.json"), callback=update)


def twilio_mms_media(http, media, asked=None):
    """Twilio's MMS media (message sid -> media sids): list and DELETE; a message Twilio no longer has answers 404.
    Each list is recorded in `asked` as ("media_list", sid) when given."""

    def media_list(request):
        sid = request.url.split("/Messages/")[1].split("/")[0]
        if asked is not None:
            asked.append(("media_list", sid))
        if sid not in media:
            return 404, {}, json.dumps({"code": 20404, "message": "not found", "status": 404})
        listed = [{"sid": m, "parent_sid": sid, "content_type": "image/jpeg"} for m in media[sid]]
        page = {"media_list": listed, "page": 0, "page_size": 50, "next_page_uri": None, "uri": request.url}
        return 200, {}, json.dumps(page)

    def media_delete(request):
        sid, media_sid = re.search(r"/Messages/(\w+)/Media/(\w+)\.json", request.url).groups()
        media[sid].remove(media_sid)
        return 204, {}, ""

    http.add_callback(responses.GET, re.compile(rf"{re.escape(API)}/Messages/\w+/Media\.json.*"), callback=media_list)
    http.add_callback(responses.DELETE, re.compile(rf"{re.escape(API)}/Messages/\w+/Media/\w+\.json"), media_delete)


def version_keys(user):
    return set(DocumentVersion.objects.filter(document__owner=user).values_list("storage_key", flat=True))
