"""Erasure leaves no name behind in push payloads of deleted connections nor in staff's admin history, and no
file of the user in the bucket."""

import json
import re

import pytest
import responses
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from documents.models import DocumentVersion
from integrations.alerts import alert_raise
from integrations.models import Alert, Connection, ProviderCall, WebhookEvent
from messaging.models import SmsMessage
from privacy import erasure as erasure_service
from privacy.models import Erasure
from tests.documents.conftest import EICAR
from tests.integrations.factories import ConnectionFactory, WebhookEventFactory
from tests.messaging.factories import SmsFactory

from .conftest import API, BUCKET, twilio_messages, twilio_mms_media

pytestmark = pytest.mark.django_db

GOOGLE_REVOKE = "https://oauth2.googleapis.com/revoke"


def test_erasure_redacts_push_payloads_naming_a_connected_account_deleted_at_request_time(
    user, staff_user, http, eager
):
    """A Gmail push payload names the connected mailbox (Connection.account), which need not be the hub email.

    The connection is deleted at once when erasure is requested (disconnect); the deletion run collects the
    references to redact afterwards, so the address must still be known then.
    """
    http.add(responses.POST, GOOGLE_REVOKE, status=200)
    conn = ConnectionFactory(owner=user, account="private.mailbox@gmail.example")
    assert conn.account != user.email
    push = WebhookEventFactory(
        provider="gmail",
        event_id="pubsub-msg-1",
        type="gmail.history",
        payload={
            "data": {"emailAddress": "private.mailbox@gmail.example", "historyId": "9876"},
            "message": {"messageId": "pubsub-msg-1"},
            "subscription": "projects/hub/subscriptions/gmail",
        },
    )

    erasure, created = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert created and not Connection.objects.filter(owner=user).exists()  # gone at once
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"

    push.refresh_from_db()
    assert "private.mailbox@gmail.example" not in str(push.payload), push.payload
    assert WebhookEvent.objects.filter(pk=push.pk).exists()  # the row stays for de-duplication


def test_erasure_leaves_no_admin_history_naming_the_user(user, staff_user, admin_client, eager):
    """Staff editing the user's rows in Django admin writes LogEntry rows whose object_repr names the user
    (str(Customer) is "<username> (cus_...)", str(User) is the username). They are the admin history of the
    *staff* member, so the `admin` holder (which erases only entries the erased user made) leaves them behind."""
    from django.contrib.admin.models import LogEntry

    from payments.models import Customer

    customer = Customer.objects.create(user=user, external_id="cus_admin_edit")
    response = admin_client.post(
        f"/admin/payments/customer/{customer.pk}/change/", {"user": user.pk, "external_id": "cus_admin_edit2"}
    )
    assert response.status_code == 302, response.content[:500]
    assert LogEntry.objects.filter(object_repr__contains=user.username).exists()  # what staff did, naming the user

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"

    leftover = list(LogEntry.objects.filter(object_repr__contains=user.username).values_list("object_repr", flat=True))
    assert leftover == []


@pytest.mark.parametrize("left", ["copied_not_yet_deleted", "moved_leaving_the_original_as_a_noncurrent_version"])
def test_erasure_removes_both_keys_of_an_infected_file_in_every_version(user, staff_user, client_for, s3, eager, left):
    """A quarantine move copies the object under quarantine/ and then deletes the original. Erasure deleted only
    the key on the row: a run that died after its copy left the copy, and a move on a versioned bucket by a plain
    delete left the original's bytes as a noncurrent version, both outliving the account."""
    resp = client_for(user).post("/api/v1/documents/", {"file": SimpleUploadedFile("eicar.txt", EICAR)})
    assert resp.status_code == 201, resp.content
    version = DocumentVersion.objects.get()
    original, dest = version.storage_key, f"quarantine/{version.storage_key}"
    DocumentVersion.objects.update(
        scan_status="infected", scan_detail="Eicar-Test-Signature", scanned_at=timezone.now()
    )
    s3.copy_object(Bucket=BUCKET, Key=dest, CopySource={"Bucket": BUCKET, "Key": original})
    if left == "moved_leaving_the_original_as_a_noncurrent_version":
        s3.delete_object(Bucket=BUCKET, Key=original)
        DocumentVersion.objects.update(storage_key=dest, quarantined_at=timezone.now())

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"

    listed = s3.list_object_versions(Bucket=BUCKET)
    assert [v["Key"] for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]] == []


def test_erasure_deletes_the_media_files_of_the_users_mms_at_twilio(user, other_user, staff_user, http, eager):
    """An inbound MMS's pictures stay at Twilio (the hub keeps only their count): erasure deleted the rows and left
    the files there, readable with the account's credentials, after the user was gone. The other user's stay."""
    mine = SmsFactory(
        owner=user, direction="inbound", status="received", num_media=2, external_id="MM" + "a" * 32, body="photo"
    )
    theirs = SmsFactory(
        owner=other_user, direction="inbound", status="received", num_media=1, external_id="MM" + "b" * 32
    )
    gone = SmsFactory(owner=user, direction="inbound", status="received", num_media=1, external_id="MM" + "c" * 32)
    media = {mine.external_id: ["ME" + "1" * 32, "ME" + "2" * 32], theirs.external_id: ["ME" + "3" * 32]}

    twilio_mms_media(http, media)  # `gone` is no longer at Twilio: nothing left to delete
    twilio_messages(http, {mine.external_id: mine.body})

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"

    assert media == {mine.external_id: [], theirs.external_id: ["ME" + "3" * 32]}
    assert Erasure.objects.get(pk=erasure.pk).report["providers"]["twilio.message_media"] == {
        "deleted": 1,
        "already_gone": 1,
    }
    assert not SmsMessage.objects.filter(pk__in=[mine.pk, gone.pk]).exists()
    assert ProviderCall.objects.filter(provider="twilio", operation="sms.media_delete", outcome="ok").count() == 2


def test_erasure_redacts_the_bodies_of_the_users_messages_at_twilio(user, other_user, staff_user, http, eager):
    """Twilio keeps the text of every message it sent or received in its Message record: erasure deleted the
    hub's rows and left the user's words readable at Twilio. Each is redacted (an empty Body, the record with
    its price kept); one Twilio no longer has counts as gone; one never sent (no sid) asks nothing; the other
    user's stay."""
    sent = SmsFactory(owner=user, status="delivered", external_id="SM" + "a" * 32, body="my secret text")
    received = SmsFactory(
        owner=user, direction="inbound", status="received", external_id="SM" + "b" * 32, body="their reply"
    )
    gone = SmsFactory(owner=user, status="delivered", external_id="SM" + "c" * 32)
    SmsFactory(owner=user, status="failed", external_id=None)  # refused before Twilio made a record
    theirs = SmsFactory(owner=other_user, status="delivered", external_id="SM" + "d" * 32, body="not erased")
    bodies = {sms.external_id: sms.body for sms in (sent, received, theirs)}
    twilio_messages(http, bodies)

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"

    assert bodies == {sent.external_id: "", received.external_id: "", theirs.external_id: "not erased"}
    assert Erasure.objects.get(pk=erasure.pk).report["providers"]["twilio.message_bodies"] == {
        "redacted": 2,
        "already_gone": 1,
    }
    assert not SmsMessage.objects.filter(owner=user).exists()
    redactions = ProviderCall.objects.filter(provider="twilio", operation="sms.redact")
    assert sorted(redactions.values_list("outcome", "http_status")) == [("error", 404), ("ok", 200), ("ok", 200)]
    assert {c.request.url for c in http.calls} == {
        f"{API}/Messages/{s.external_id}.json" for s in (sent, received, gone)
    }


def test_a_redaction_twilio_fails_is_retried_and_the_rows_wait_for_it(user, staff_user, http, eager):
    """The rows go only after Twilio redacted: a 503 fails the messaging holder (the erasure retries later), the
    user's messages are still there to find, and the next run redacts them."""
    sent = SmsFactory(owner=user, status="delivered", external_id="SM" + "e" * 32, body="my secret text")
    http.add(responses.POST, f"{API}/Messages/{sent.external_id}.json", status=503)

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "retrying"
    row = Erasure.objects.get(pk=erasure.pk)
    assert "messaging" in row.last_error
    assert SmsMessage.objects.filter(pk=sent.pk).exists()

    bodies = {sent.external_id: sent.body}
    http.remove(responses.POST, f"{API}/Messages/{sent.external_id}.json")
    twilio_messages(http, bodies)
    assert erasure_service.erasure_run(erasure_id=erasure.pk, now=row.next_attempt_at) == "done"
    assert bodies == {sent.external_id: ""}
    assert not SmsMessage.objects.filter(pk=sent.pk).exists()


def test_a_retried_erasure_asks_twilio_only_about_the_messages_it_has_not_erased_yet(user, staff_user, http, eager):
    """A retry used to redact every message of the user again, and list an MMS's media again, after one 503 on
    the last of them: a call per message per retry, and a report counting each message once per run. A message
    whose media and text are gone at Twilio leaves the hub at once, so the retry asks only about the rest."""
    first = SmsFactory(owner=user, status="delivered", external_id="SM" + "f" * 32, body="one")
    mms = SmsFactory(
        owner=user, direction="inbound", status="received", num_media=1, external_id="MM" + "f" * 32, body="pic"
    )
    last = SmsFactory(owner=user, status="delivered", external_id="SM" + "g" * 32, body="three")
    bodies = {sms.external_id: sms.body for sms in (first, mms, last)}
    media = {mms.external_id: ["ME" + "f" * 32]}
    refuse = {last.external_id}  # Twilio answers 503 for it until the test says otherwise
    asked = []

    def redact(request):
        sid = re.search(r"/Messages/(\w+)\.json", request.url)[1]
        asked.append(("redact", sid))
        if sid in refuse:
            return 503, {}, json.dumps({"code": 20503, "message": "unavailable", "status": 503})
        bodies[sid] = ""
        return 200, {}, json.dumps({"sid": sid, "body": "", "status": "delivered"})

    http.add_callback(responses.POST, re.compile(rf"{re.escape(API)}/Messages/\w+\.json"), callback=redact)
    twilio_mms_media(http, media, asked)
    # A task of the first message's that gave up, quoting Twilio: found by the row's id, so before the row goes.
    alert = alert_raise(
        kind=Alert.Kind.TASK_FAILED,
        message=f"messaging.sms_price_fetch({first.pk},) gave up: The 'To' number +15005550006 is not valid",
        dedupe_key="task_failed:messaging.sms_price_fetch",
    )

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "retrying"
    assert bodies == {first.external_id: "", mms.external_id: "", last.external_id: "three"}
    assert media == {mms.external_id: []}
    assert list(SmsMessage.objects.filter(owner=user).values_list("pk", flat=True)) == [last.pk]  # still to do

    asked.clear()
    refuse.clear()
    row = Erasure.objects.get(pk=erasure.pk)
    assert erasure_service.erasure_run(erasure_id=erasure.pk, now=row.next_attempt_at) == "done"

    assert asked == [("redact", last.external_id)]
    assert bodies[last.external_id] == ""
    report = Erasure.objects.get(pk=erasure.pk).report
    assert report["providers"]["twilio.message_bodies"] == {"redacted": 3}
    assert report["providers"]["twilio.message_media"] == {"deleted": 1}
    assert report["apps"]["messaging"]["counts"]["messaging.SmsMessage"] == 3
    alert.refresh_from_db()
    assert "+15005550006" not in alert.message
    assert report["apps"]["messaging"]["counts"]["integrations.Alert.redacted"] == 1
    assert not SmsMessage.objects.filter(owner=user).exists()
