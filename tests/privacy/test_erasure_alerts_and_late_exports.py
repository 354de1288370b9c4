"""Erasure leaves no personal data in staff alerts (infected file, login lockout, test alert, price drop) nor in
an export that was still being built when the erasure ran.

Each alert is raised the way the hub raises it (an upload scanned by a fake clamd, failed logins counted by
django-axes, the admin's "send a test alert" action, a price watch checked against a fake Duffel); the alert
itself stays for staff, only what named the user goes.
"""

import datetime as dt
import os
import socketserver
import threading

import pytest
import responses
import respx
import time_machine
from django.test import Client, TestCase
from django.utils import timezone

from documents.models import DocumentVersion
from documents.providers import LocalBackend
from integrations.models import Alert, AlertChannel
from integrations.states import transition
from privacy import erasure as erasure_service
from privacy import exports, registry, storage
from privacy.models import Erasure, Export
from scheduling.models import MeetingRecording
from scheduling.recordings import storage_prefix_for
from tests.documents.conftest import EICAR, FakeClamd
from tests.documents.helpers import post as upload
from tests.factories import UserFactory
from tests.integrations.factories import ConnectionFactory
from tests.payments import stripe_fakes
from tests.payments.factories import InvoiceFactory, PaymentFactory
from tests.payments.test_webhooks import deliver
from tests.scheduling.factories import MeetingFactory
from tests.travel.conftest import BASE as DUFFEL_BASE
from tests.travel.duffel_fake import FakeDuffel, make_offer
from tests.travel.factories import WatchFactory
from travel import services as travel_services

from .conftest import API as TWILIO_API
from .conftest import _store

pytestmark = pytest.mark.django_db

GOOGLE_REVOKE = "https://oauth2.googleapis.com/revoke"


def _erase(subject, staff):
    """Expedited erasure of `subject`, run to the end."""
    erasure, _ = erasure_service.erase_request(subject=subject, requested_by=staff, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done", erasure.last_error
    return erasure


def _alert_messages():
    return " ".join(Alert.objects.values_list("message", flat=True))


# --- Alerts -------------------------------------------------------------------------------------


@pytest.fixture
def clamd(settings):
    server = FakeClamd()
    settings.CLAMD_URL = server.url
    yield server
    server.close()


def test_the_infected_file_alert_no_longer_names_the_file_once_its_owner_is_erased(
    user, staff_user, client_for, clamd, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        resp = upload(client_for(user), "ada-lovelace-medical-record.txt", EICAR, "text/plain")
    assert resp.status_code == 201, resp.json()
    assert DocumentVersion.objects.get().scan_status == "infected"
    alert = Alert.objects.get(kind=Alert.Kind.SECURITY, dedupe_key__startswith="document_infected:")
    assert "ada-lovelace-medical-record.txt" in alert.message  # what the erasure must take away

    _erase(user, staff_user)

    alert.refresh_from_db()
    assert "ada-lovelace-medical-record" not in alert.message, alert.message
    assert "Eicar-Test-Signature" in alert.message  # staff still see what was found


def test_the_login_lockout_alert_no_longer_names_the_erased_user(user, staff_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(4):
        client.post(
            "/api/v1/auth/token/", {"username": user.username, "password": "wrong"}, content_type="application/json"
        )
    alert = Alert.objects.get(dedupe_key="security:login_lockout")
    assert user.username in alert.message

    _erase(user, staff_user)

    alert.refresh_from_db()
    assert user.username not in alert.message, alert.message
    assert alert.message.startswith("Login lockout")


def test_a_test_alert_no_longer_names_the_erased_staff_member_who_sent_it(staff_user):
    channel = AlertChannel.objects.create(name="ops", kind="email", target="ops@example.org")
    client = Client()
    client.force_login(staff_user)
    response = client.post(
        "/admin/integrations/alertchannel/", {"action": "send_test", "_selected_action": [channel.pk]}
    )
    assert response.status_code == 302
    alert = Alert.objects.get(kind=Alert.Kind.OPERATIONS)
    assert staff_user.username in alert.message

    _erase(staff_user, UserFactory(is_staff=True))

    alert.refresh_from_db()
    assert staff_user.username not in alert.message, alert.message


@pytest.mark.parametrize("kind", ["sms", "call"])
def test_a_failed_send_alert_no_longer_names_the_number_the_erased_user_contacted(
    user, staff_user, client_for, http, eager, django_capture_on_commit_callbacks, kind
):
    """Twilio's refusal quotes the number; the task's "gave up" alert quotes the refusal. The call log's error
    texts are cleared at erasure; the alert must lose the number too, and still say which task gave up."""
    number = "+15005550006"
    path, endpoint, body = {
        "sms": ("sms", "Messages.json", {"to": number, "body": "Your table is ready."}),
        "call": ("calls", "Calls.json", {"to": number, "say": "Your table is ready."}),
    }[kind]
    http.add(
        responses.POST,
        f"{TWILIO_API}/{endpoint}",
        json={"code": 21211, "message": f"The 'To' number {number} is not a valid phone number.", "status": 400},
        status=400,
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(user).post(f"/api/v1/messaging/{path}/", body, format="json")
    assert response.status_code == 202, response.content
    alert = Alert.objects.get(kind=Alert.Kind.TASK_FAILED)
    assert number in alert.message  # what the erasure must take away

    _erase(user, staff_user)

    alert.refresh_from_db()
    assert number not in alert.message, alert.message
    assert alert.message.startswith(f"messaging.{'sms_send' if kind == 'sms' else 'call_place'}(")


@pytest.fixture
def duffel(settings):
    fake = FakeDuffel()
    settings.DUFFEL_ACCESS_TOKEN = fake.token
    settings.DUFFEL_API_BASE = DUFFEL_BASE
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "duffel": {"requests": {"rate": 1000, "burst": 1000}}}
    with respx.mock(assert_all_called=False) as router:
        fake.respx_routes(router, DUFFEL_BASE)
        yield fake


def test_the_price_drop_alert_no_longer_holds_the_erased_users_trip(user, staff_user, duffel, eager):
    prices = ["400.00", "300.00"]

    def offers(slices):
        total = prices.pop(0) if len(prices) > 1 else prices[0]
        return [make_offer(slices, offer_id=f"off_{total}", total=total)]

    duffel.offers_for = offers
    watch = WatchFactory(owner=user, origin="LHR", destination="JFK")
    trip = (f"{watch.origin} → {watch.destination}", watch.departure_date.isoformat())
    for minutes in (0, 20):
        with (
            time_machine.travel(timezone.now() + dt.timedelta(minutes=minutes)),
            TestCase.captureOnCommitCallbacks(execute=True),
        ):
            outcome = travel_services.watch_check(watch_id=watch.pk)
    assert outcome == "notified"
    alert = Alert.objects.get(kind=Alert.Kind.PRICE_DROP)
    assert all(part in alert.message for part in trip), alert.message

    _erase(user, staff_user)

    alert.refresh_from_db()
    assert not any(part in alert.message for part in trip), alert.message


class RefusingSmtp(socketserver.ThreadingTCPServer):
    """A mail server that knows no recipient: RCPT TO gets 550 quoting the address, as Postfix answers."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()


class _SmtpHandler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 mx.example.com ESMTP")
        for raw in self.rfile:
            command = raw.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250 mx.example.com")
            elif verb == "RCPT":
                address = command.split(":", 1)[1].strip().strip("<>")
                self.reply(f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:  # HELO, MAIL, RSET, NOOP
                self.reply("250 2.0.0 Ok")


@pytest.fixture
def refusing_mail_server(settings):
    server = RefusingSmtp()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.server_address
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield server
    server.shutdown()
    server.server_close()


def test_a_failed_email_alert_no_longer_quotes_the_erased_users_address(
    user, staff_user, duffel, eager, refusing_mail_server
):
    """The mail server's refusal quotes the recipient: the price-drop email task's "gave up" alert, quoting the
    refusal, held the user's email address after the erasure. The alert stays; the address goes."""
    watch = WatchFactory(owner=user, origin="LHR", destination="JFK", target_price="350.00")
    duffel.offers_for = lambda slices: [make_offer(slices, offer_id="off_1", total="300.00")]
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert travel_services.watch_check(watch_id=watch.pk) == "notified"
    alert = Alert.objects.get(kind=Alert.Kind.TASK_FAILED)
    assert alert.message.startswith("travel.watch_notify(") and user.email in alert.message, alert.message
    assert "Recipient address rejected" in alert.message

    _erase(user, staff_user)

    alert.refresh_from_db()
    assert user.email not in alert.message.lower(), alert.message
    assert alert.message.startswith("travel.watch_notify(") and "Recipient address rejected" in alert.message


def test_a_failed_payment_notice_alert_no_longer_quotes_the_erased_users_decline_reason(
    client, user, staff_user, settings, eager, refusing_mail_server, django_capture_on_commit_callbacks
):
    """The notice task takes Stripe's decline message as its argument, so its "gave up" alert quoted why the
    user's card was declined. The erasure clears that text on the payment (kept for accounting); the alert kept
    it. The alert stays (which task, which invoice); the reason goes."""
    settings.STRIPE_WEBHOOK_SECRET = stripe_fakes.WEBHOOK_SECRET
    payment = PaymentFactory(invoice=InvoiceFactory(owner=user), payment_intent_id="pi_declined")
    reason = "Your card has insufficient funds."
    failed = stripe_fakes.event(
        "payment_intent.payment_failed", stripe_fakes.intent(payment, error=stripe_fakes.decline_error(message=reason))
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, failed).status_code == 200
    alert = Alert.objects.get(kind=Alert.Kind.TASK_FAILED)
    assert alert.message.startswith(f"payments.payment_failed_notify({payment.invoice_id},"), alert.message
    assert reason in alert.message

    _erase(user, staff_user)

    alert.refresh_from_db()
    assert reason not in alert.message and user.email not in alert.message.lower(), alert.message
    assert alert.message.startswith(f"payments.payment_failed_notify({payment.invoice_id},"), alert.message


# --- An export still being built when the erasure runs --------------------------------------------


def _zips(settings):
    root = settings.PRIVACY_EXPORT_ROOT
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]


def _erase_during(monkeypatch, point, *, subject, staff):
    """Run `subject`'s whole erasure at `point` of an export build ("writing": while the apps are written;
    "uploading": once the zip is written and its upload begins), as a second worker would."""
    done = []

    def erase_now():
        if not done:
            done.append(_erase(subject, staff))

    if point == "writing":
        # One more holder, written last: the build is part-way through the user's data.
        last = registry.PrivacyHolder(app="zz_race", models=(), export=lambda user, out: erase_now(), order=10_000)
        monkeypatch.setitem(registry._HOLDERS, last.app, last)
    else:
        real_save = storage.save

        def save(*args, **kwargs):
            erase_now()
            return real_save(*args, **kwargs)

        monkeypatch.setattr(storage, "save", save)
    return done


@pytest.mark.parametrize("point", ["writing", "uploading"])
def test_an_export_finishing_after_the_erasure_leaves_no_zip_behind(user, staff_user, settings, monkeypatch, point):
    export, _ = exports.export_request(subject=user, requested_by=user)
    erased = _erase_during(monkeypatch, point, subject=user, staff=staff_user)

    exports.export_build(export_id=export.pk)

    assert erased  # the erasure did run in the middle of the build
    assert _zips(settings) == []
    assert not Export.objects.filter(pk=export.pk).exists()


def test_an_export_requested_while_the_erasure_retries_is_discarded_and_marked(user, staff_user, settings, http):
    """The erasure has deleted the user's exports and waits to retry a provider (Google's revoke is down). An
    export built now must leave no zip: deleting the account at the end only drops the row that names it."""
    http.add(responses.POST, GOOGLE_REVOKE, status=503)
    ConnectionFactory(owner=user)
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "retrying"
    erasure.refresh_from_db()
    assert "privacy" in erasure.report["done"]
    export, _ = exports.export_request(subject=user, requested_by=staff_user)

    assert exports.export_build(export_id=export.pk) is None

    assert _zips(settings) == []
    row = Export.objects.get(pk=export.pk)
    assert (row.status, row.storage_key) == ("expired", "")
    assert "erased" in row.error
    http.replace(responses.POST, GOOGLE_REVOKE, status=200)
    assert erasure_service.erasure_run(erasure_id=erasure.pk, now=erasure.next_attempt_at) == "done"
    assert _zips(settings) == [] and not Export.objects.filter(pk=export.pk).exists()


def test_an_export_built_during_the_grace_period_is_kept_until_the_erasure_runs(user, staff_user, settings):
    """The fix must not refuse exports while the user may still cancel their erasure."""
    erasure_service.erase_request(subject=user, requested_by=staff_user)
    export, _ = exports.export_request(subject=user, requested_by=staff_user)

    assert exports.export_build(export_id=export.pk) == export.pk

    assert Export.objects.get(pk=export.pk).status == "ready" and len(_zips(settings)) == 1


def _recording_copy_of(user):
    """A meeting recording the hub keeps a copy of for `user` (on the filesystem); its storage key."""
    meeting = MeetingFactory(owner=user)
    key = f"{storage_prefix_for(user.pk)}copy-{user.pk}"
    MeetingRecording.objects.create(
        meeting=meeting,
        external_id=f"rec-copied-{user.pk}",
        file_type="MP4",
        copy_status="copied",
        storage_backend=_store(key, b"meeting recording" * 50),
        storage_key=key,
    )
    return key


def _while_reading(monkeypatch, key, then):
    """Run `then()` just before the export reads the object at `key`, as a second worker would."""
    read_into = LocalBackend.read_into

    def racing_read_into(self, k, consume, **kwargs):
        if k == key:
            then()
        return read_into(self, k, consume, **kwargs)

    monkeypatch.setattr(LocalBackend, "read_into", racing_read_into)


def test_an_export_whose_files_the_erasure_deletes_mid_build_is_shown_discarded_not_failed(
    user, staff_user, client_for, settings, monkeypatch, eager, django_capture_on_commit_callbacks
):
    """Another worker is part-way through the erasure: it has deleted the recording copies and not yet reached
    the exports. The build that was reading the copy ends as an erased user's export (expired, no zip), not as
    a failure staff are alerted about and would go looking for a lost file."""
    key = _recording_copy_of(user)
    staff = client_for(staff_user)

    def erasure_part_way():
        erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
        assert transition(Erasure, erasure.pk, Erasure.Status.RUNNING, frm=Erasure.Status.SCHEDULED)
        report = erasure_service.EraseReport(erasure, pseudonym_user=UserFactory())
        registry.holder("scheduling").erase(user, report)

    _while_reading(monkeypatch, key, erasure_part_way)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post("/api/v1/privacy/export/", {"user": user.pk}, format="json")
    assert response.status_code == 202

    shown = staff.get(f"/api/v1/privacy/exports/{response.json()['id']}/").json()
    assert shown["status"] == "expired", shown
    assert shown["error"] == exports.ERASED_DETAIL and shown["download"] is None
    assert not Alert.objects.filter(kind=Alert.Kind.TASK_FAILED).exists()
    assert _zips(settings) == []
    admin = Client()
    admin.force_login(staff_user)
    listed = admin.get("/admin/privacy/export/", {"status__exact": "expired"})
    assert listed.status_code == 200 and f">{response.json()['id']}<" in listed.content.decode()


def test_an_export_reading_a_file_when_the_whole_erasure_runs_ends_quietly(
    user, staff_user, client_for, settings, monkeypatch, eager, django_capture_on_commit_callbacks
):
    key = _recording_copy_of(user)
    _while_reading(monkeypatch, key, lambda: _erase(user, staff_user))

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(user).post("/api/v1/privacy/export/", {}, format="json")
    assert response.status_code == 202

    assert not Export.objects.filter(pk=response.json()["id"]).exists()
    # no staff alert about a task that "gave up" (naming a file of the erased user): nothing failed
    assert not Alert.objects.filter(kind=Alert.Kind.TASK_FAILED).exists(), _alert_messages()
    assert _zips(settings) == []
