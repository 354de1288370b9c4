"""Twilio callbacks through the inbox: signatures, de-duplication, forward-only status, inbound SMS."""

import datetime as dt
from decimal import Decimal
from email.utils import format_datetime

import pytest
from django.utils import timezone

from integrations.models import ProviderCall, WebhookEvent
from messaging import tasks
from messaging.models import OptOut, SmsMessage
from messaging.services import CALL_STATUS

from .conftest import API, HUB_NUMBER, MESSAGES_URL, message_json, sign, twilio_post
from .factories import CallFactory, SmsFactory

pytestmark = pytest.mark.django_db

STATUS = "/webhooks/twilio/sms-status/"


@pytest.fixture
def post(client, django_capture_on_commit_callbacks, eager):
    """Deliver a signed callback and run what it enqueued (inbox processing, follow-up tasks)."""

    def deliver(path, params, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return twilio_post(client, path, params, **kwargs)

    return deliver


def status_params(sid, status, **extra):
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "AccountSid": "AC1",
        "From": HUB_NUMBER,
        "To": "+15005550006",
        **extra,
    }


class TestSignatures:
    def test_a_bad_signature_is_refused_with_403_and_nothing_is_stored(self, twilio, client):
        response = twilio_post(client, STATUS, status_params("SM1", "sent"), token="not-the-auth-token")
        assert response.status_code == 403 and response.json()["error"] == "bad_signature"
        assert WebhookEvent.objects.count() == 0

    def test_a_missing_signature_is_refused_with_403(self, twilio, client):
        response = twilio_post(client, STATUS, status_params("SM1", "sent"), signature=None)
        assert response.status_code == 403 and response.json()["error"] == "missing_signature"
        assert WebhookEvent.objects.count() == 0

    def test_a_tampered_parameter_breaks_the_signature(self, twilio, client):
        params = status_params("SM1", "sent")
        signature = sign(STATUS, params)
        response = twilio_post(client, STATUS, {**params, "MessageStatus": "delivered"}, signature=signature)
        assert response.status_code == 403

    def test_the_signature_is_checked_against_the_public_url_behind_a_proxy(self, twilio, client):
        """The proxy forwards http://testserver/...; Twilio signed https://hub.example.com/..."""
        SmsFactory(external_id="SM1", status="sending")
        params = status_params("SM1", "sent")
        assert twilio_post(client, STATUS, params, base="http://testserver").status_code == 403
        ok = twilio_post(client, STATUS, params, HTTP_X_FORWARDED_PROTO="http", HTTP_X_FORWARDED_HOST="10.0.0.5:8000")
        assert ok.status_code == 200

    def test_a_signed_url_with_a_query_string_verifies(self, twilio, client):
        response = twilio_post(client, f"{STATUS}?sms=12", status_params("SM1", "sent"))
        assert response.status_code == 200

    def test_without_an_auth_token_webhooks_answer_503(self, twilio, client):
        params = status_params("SM1", "sent")
        signature = sign(STATUS, params)
        twilio.TWILIO_AUTH_TOKEN = ""
        response = twilio_post(client, STATUS, params, signature=signature)
        assert response.status_code == 503 and response.json()["error"] == "webhook_not_configured"


def test_send_then_duplicated_out_of_order_callbacks_end_delivered_with_the_billed_price(
    twilio, http, post, user_client, django_capture_on_commit_callbacks
):
    http.post(MESSAGES_URL, json=message_json(sid="SM1"), status=201)
    http.get(f"{API}/Messages/SM1.json", json=message_json(sid="SM1", status="delivered", price="-0.00790"))
    with django_capture_on_commit_callbacks(execute=True):
        sms_id = user_client.post("/api/v1/messaging/sms/", {"to": "+15005550006", "body": "hi"}, format="json").json()[
            "id"
        ]
    path = f"{STATUS}?sms={sms_id}"
    answers = [
        post(path, status_params("SM1", "sent")).json()["status"],
        post(path, status_params("SM1", "delivered")).json()["status"],
        post(path, status_params("SM1", "sent")).json()["status"],  # Twilio's retry of an old one
        post(path, status_params("SM1", "sending")).json()["status"],  # late and out of order
        post(path, status_params("SM1", "delivered")).json()["status"],
    ]
    assert answers == ["received", "received", "duplicate", "received", "duplicate"]
    sms = SmsMessage.objects.get()
    assert sms.status == "delivered" and sms.delivered_at is not None
    assert WebhookEvent.objects.filter(provider="twilio").count() == 3
    assert WebhookEvent.objects.get(event_id="sms.status:SM1:sending").status == "ignored"
    # The billed price replaces the estimate and is booked once, on the fetch made at "sent".
    assert (sms.price_usd, sms.price_final, sms.cost_recorded) == (Decimal("0.00790"), True, True)
    calls = list(ProviderCall.objects.order_by("id").values_list("operation", "units", "cost_usd"))
    assert calls == [("sms.send", {"segments": 1}, Decimal(0)), ("sms.price", {}, Decimal("0.0079"))]


def test_an_undelivered_message_records_the_error_and_never_moves_back(twilio, http, post):
    sms = SmsFactory(external_id="SM2", status="sending")
    http.get(f"{API}/Messages/SM2.json", json=message_json(sid="SM2", status="undelivered", price="-0.00790"))
    post(STATUS, status_params("SM2", "undelivered", ErrorCode="30003"))
    post(STATUS, status_params("SM2", "sent"))
    sms.refresh_from_db()
    assert (sms.status, sms.error_code) == ("undelivered", "30003")


def test_a_late_delivery_receipt_after_undelivered_clears_the_error(twilio, http, post, user_client, user):
    # Twilio may report undelivered (30003) and then the carrier's late receipt says delivered: the message shows
    # delivered with no error, not delivered with the undelivered error's code.
    sms = SmsFactory(owner=user, external_id="SM9", status="sending")
    http.get(f"{API}/Messages/SM9.json", json=message_json(sid="SM9", status="delivered", price="-0.00790"))
    post(STATUS, status_params("SM9", "undelivered", ErrorCode="30003"))
    assert SmsMessage.objects.get(pk=sms.pk).error_code == "30003"
    post(STATUS, status_params("SM9", "delivered"))
    body = user_client.get(f"/api/v1/messaging/sms/{sms.pk}/").json()
    assert (body["status"], body["error_code"], body["error_message"]) == ("delivered", "", "")
    assert body["delivered_at"] is not None


def test_a_message_delivered_without_a_sent_callback_has_its_sent_time_and_a_late_sent_moves_nothing(
    twilio, http, post
):
    # Twilio may skip "sent" or send it after "delivered": a delivered message was sent all the same.
    sms = SmsFactory(external_id="SM4", status="sending")
    http.get(f"{API}/Messages/SM4.json", json=message_json(sid="SM4", status="delivered", price="-0.00790"))
    post(STATUS, status_params("SM4", "delivered"))
    sms.refresh_from_db()
    assert sms.status == "delivered" and sms.delivered_at is not None
    assert sms.sent_at == sms.delivered_at  # the delivered event's time: all the hub knows
    delivered = (sms.sent_at, sms.delivered_at)
    post(STATUS, status_params("SM4", "sent"))  # late
    sms.refresh_from_db()
    assert sms.status == "delivered" and (sms.sent_at, sms.delivered_at) == delivered


def test_a_delivered_message_keeps_the_time_it_was_sent(twilio, http, post):
    sms = SmsFactory(external_id="SM5", status="sending")
    http.get(f"{API}/Messages/SM5.json", json=message_json(sid="SM5", status="delivered", price="-0.00790"))
    post(STATUS, status_params("SM5", "sent"))
    sent_at = SmsMessage.objects.get(pk=sms.pk).sent_at
    post(STATUS, status_params("SM5", "delivered"))
    sms.refresh_from_db()
    assert sms.status == "delivered" and sms.sent_at == sent_at < sms.delivered_at


def test_an_undelivered_message_without_a_sent_callback_was_sent_to_the_carrier(twilio, http, post):
    # Undelivered is the carrier's receipt: the message left Twilio. Failed is not: it was never sent.
    sms = SmsFactory(external_id="SM6", status="sending")
    failed = SmsFactory(external_id="SM7", status="sending")
    http.get(f"{API}/Messages/SM6.json", json=message_json(sid="SM6", status="undelivered", price="-0.00790"))
    http.get(f"{API}/Messages/SM7.json", json=message_json(sid="SM7", status="failed", price="0"))
    post(STATUS, status_params("SM6", "undelivered", ErrorCode="30003"))
    post(STATUS, status_params("SM7", "failed", ErrorCode="30008"))
    sms.refresh_from_db()
    failed.refresh_from_db()
    assert sms.status == "undelivered" and sms.sent_at is not None and sms.delivered_at is None
    assert failed.status == "failed" and failed.sent_at is None


def test_a_failed_message_shows_twilios_description_of_its_error_not_the_code_alone(
    twilio, http, post, user_client, user
):
    """The status callback carries ErrorCode without a message: the API showed "30008" and an empty
    error_message, though the fetch the final status queues (its price) read Twilio's description of it."""
    sms = SmsFactory(owner=user, external_id="SM8", status="sending")
    described = message_json(sid="SM8", status="failed", price="0", error_code=30008, error_message="Unknown error")
    http.get(f"{API}/Messages/SM8.json", json=described)
    post(STATUS, status_params("SM8", "failed", ErrorCode="30008"))
    body = user_client.get(f"/api/v1/messaging/sms/{sms.pk}/").json()
    assert (body["status"], body["error_code"], body["error_message"]) == ("failed", "30008", "Unknown error")


def test_a_description_twilio_gives_for_another_error_is_not_kept(twilio, http, post):
    sms = SmsFactory(external_id="SM10", status="sending")
    other = message_json(
        sid="SM10", status="undelivered", price="-0.0079", error_code=30003, error_message="Unreachable"
    )
    http.get(f"{API}/Messages/SM10.json", json=other)
    post(STATUS, status_params("SM10", "failed", ErrorCode="30008"))
    sms.refresh_from_db()
    assert (sms.error_code, sms.error_message) == ("30008", "")


def _twilio_costs(sms):
    return sum(c.cost_usd or 0 for c in ProviderCall.objects.filter(provider="twilio", related_id=str(sms.pk)))


def test_an_undelivered_message_whose_cost_was_booked_at_sent_shows_twilios_description_of_its_error(
    twilio, http, post, user_client, user
):
    """The description was read only by the price fetch, which the failure's callback no longer queues once the
    cost was booked at "sent": the message showed its ErrorCode alone. One more fetch reads it, and books nothing."""
    sms = SmsFactory(owner=user, external_id="SM11", status="sending")
    http.get(f"{API}/Messages/SM11.json", json=message_json(sid="SM11", status="sent", price="-0.0079"))
    post(STATUS, status_params("SM11", "sent"))
    sms.refresh_from_db()
    assert sms.cost_recorded and _twilio_costs(sms) == Decimal("0.0079")
    http.get(
        f"{API}/Messages/SM11.json",
        json=message_json(
            sid="SM11",
            status="undelivered",
            price="-0.0079",
            error_code=30003,
            error_message="Unreachable destination handset",
        ),
    )
    post(STATUS, status_params("SM11", "undelivered", ErrorCode="30003"))
    body = user_client.get(f"/api/v1/messaging/sms/{sms.pk}/").json()
    assert (body["status"], body["error_code"], body["error_message"]) == (
        "undelivered",
        "30003",
        "Unreachable destination handset",
    )
    assert _twilio_costs(sms) == Decimal("0.0079")  # booked once
    assert list(ProviderCall.objects.filter(provider="twilio").order_by("pk").values_list("operation", flat=True)) == [
        "sms.price",
        "sms.fetch",
    ]


def test_a_failure_whose_price_fetch_finds_the_cost_booked_meanwhile_still_reads_its_description(twilio, http, eager):
    """The failure's callback saw no cost booked and queued a price fetch; the fetch "sent" had queued booked the
    cost meanwhile, having read the message before it failed. The callback's fetch has nothing to book: it still
    reads the description."""
    sms = SmsFactory(external_id="SM12", status="failed", error_code="30008", cost_recorded=True)
    http.get(
        f"{API}/Messages/SM12.json",
        json=message_json(
            sid="SM12", status="failed", price="-0.0079", error_code=30008, error_message="Unknown error"
        ),
    )
    tasks.sms_price_fetch.delay(sms.pk)
    sms.refresh_from_db()
    assert (sms.status, sms.error_code, sms.error_message) == ("failed", "30008", "Unknown error")
    assert _twilio_costs(sms) == 0


def test_the_price_fetch_gives_a_message_twilios_time_of_sending_not_when_the_hub_read_the_callback(
    twilio, http, post, user_client, user
):
    """A status callback's time is when the hub processed it: the webhook drain was behind, or Twilio sent "sent"
    late. The price fetch that callback queues reads Twilio's date_sent, and left sent_at at the processing time."""
    sent = (timezone.now() - dt.timedelta(minutes=20)).replace(microsecond=0)
    sms = SmsFactory(owner=user, external_id="SM13", status="sending")
    http.get(
        f"{API}/Messages/SM13.json",
        json=message_json(sid="SM13", status="sent", price="-0.0079", date_sent=format_datetime(sent, usegmt=True)),
    )
    post(STATUS, status_params("SM13", "sent"))
    body = user_client.get(f"/api/v1/messaging/sms/{sms.pk}/").json()
    assert dt.datetime.fromisoformat(body["sent_at"]) == sent
    # A time the row holds that is earlier than Twilio's is kept (only ever moved earlier).
    earlier = SmsFactory(external_id="SM14", status="sent", sent_at=sent - dt.timedelta(minutes=1))
    http.get(
        f"{API}/Messages/SM14.json",
        json=message_json(sid="SM14", status="sent", price="-0.0079", date_sent=format_datetime(sent, usegmt=True)),
    )
    tasks.sms_price_fetch.delay(earlier.pk)
    earlier.refresh_from_db()
    assert earlier.sent_at == sent - dt.timedelta(minutes=1) and earlier.cost_recorded


def test_a_message_sent_through_a_messaging_service_shows_the_number_twilio_chose_not_the_service(
    twilio, http, post, user_client, django_capture_on_commit_callbacks
):
    # The service picks the number after the create call: Twilio answers "accepted" with no From, and the status
    # callbacks name the number it chose. The API showed the service's MG id as from_number for good.
    service = "MG" + "c" * 32
    twilio.TWILIO_MESSAGING_SERVICE_SID = service
    chosen = {"from": None, "messaging_service_sid": service}
    http.post(MESSAGES_URL, json=message_json(sid="SM8", status="accepted", segments="0", **chosen), status=201)
    http.get(f"{API}/Messages/SM8.json", json=message_json(sid="SM8", status="sent", price="-0.0079", **chosen))
    with django_capture_on_commit_callbacks(execute=True):
        created = user_client.post("/api/v1/messaging/sms/", {"to": "+15005550006", "body": "hi"}, format="json")
    url = f"/api/v1/messaging/sms/{created.json()['id']}/"
    assert (created.json()["from_number"], created.json()["messaging_service_sid"]) == ("", service)
    body = user_client.get(url).json()
    assert (body["status"], body["from_number"], body["messaging_service_sid"]) == ("sending", "", service)
    post(f"{STATUS}?sms={body['id']}", status_params("SM8", "sent", MessagingServiceSid=service))
    body = user_client.get(url).json()
    assert (body["status"], body["from_number"], body["messaging_service_sid"]) == ("sent", HUB_NUMBER, service)


def test_a_callback_that_beats_the_send_task_finds_the_message_by_its_reference(twilio, http, post):
    sms = SmsFactory(status="sending")  # the task has not written the SID yet
    http.get(f"{API}/Messages/SM3.json", json=message_json(sid="SM3", status="sent", price="-0.0079"))
    post(f"{STATUS}?sms={sms.pk}", status_params("SM3", "sent"))
    sms.refresh_from_db()
    assert (sms.status, sms.external_id) == ("sent", "SM3")


def test_a_status_for_a_message_the_hub_never_sent_is_ignored(twilio, post):
    post(STATUS, status_params("SMforeign", "delivered"))
    assert WebhookEvent.objects.get().status == "ignored"


class TestInboundSms:
    def inbound(self, post, body, sid="SMin1", sender="+15005550006", **extra):
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "From": sender,
            "To": HUB_NUMBER,
            "Body": body,
            "NumSegments": "1",
            **extra,
        }
        return post("/webhooks/twilio/sms/", params)

    def test_an_inbound_sms_is_stored_and_linked_to_the_conversation(self, twilio, post, user):
        SmsFactory(owner=user, to_number="+15005550006")
        from messaging.models import Conversation

        conversation = Conversation.objects.create(owner=user, remote_number="+15005550006")
        response = self.inbound(post, "See you at 8")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/xml")
        assert b"<Response" in response.content
        sms = SmsMessage.objects.get(direction="inbound")
        assert (sms.body, sms.conversation, sms.owner, sms.status) == ("See you at 8", conversation, user, "received")

    def test_an_inbound_mms_counts_its_media_in_the_api(self, twilio, post, user, user_client):
        # A picture with no text: Twilio sends NumMedia and MediaUrl0.. (the files stay at Twilio). The API showed
        # an empty message with nothing to tell that media came with it.
        from messaging.models import Conversation

        Conversation.objects.create(owner=user, remote_number="+15005550006")
        media = {
            "NumMedia": "2",
            "MediaUrl0": f"{API}/Messages/MMin1/Media/ME1",
            "MediaContentType0": "image/jpeg",
            "MediaUrl1": f"{API}/Messages/MMin1/Media/ME2",
            "MediaContentType1": "image/png",
        }
        self.inbound(post, "", sid="MMin1", **media)
        self.inbound(post, "no picture", sid="SMin2", NumMedia="0")
        listed = {m["sid"]: m for m in user_client.get("/api/v1/messaging/sms/").json()["results"]}
        assert (listed["MMin1"]["body"], listed["MMin1"]["num_media"]) == ("", 2)
        assert listed["SMin2"]["num_media"] == 0

    def test_a_duplicate_delivery_stores_one_message(self, twilio, post):
        self.inbound(post, "hello")
        self.inbound(post, "hello")
        assert SmsMessage.objects.filter(direction="inbound").count() == 1

    def test_stop_blocks_sends_until_start(self, twilio, post, user_client):
        self.inbound(post, " stop ", sid="SMa")
        assert OptOut.objects.get(phone_number="+15005550006").active
        refused = user_client.post("/api/v1/messaging/sms/", {"to": "+15005550006", "body": "hi"}, format="json")
        assert refused.status_code == 409 and refused.json()["error"] == "recipient_opted_out"
        self.inbound(post, "START", sid="SMb")
        assert not OptOut.objects.get(phone_number="+15005550006").active
        assert (
            user_client.post("/api/v1/messaging/sms/", {"to": "+15005550006", "body": "hi"}, format="json").status_code
            == 202
        )

    def test_help_is_stored_and_changes_nothing(self, twilio, post):
        self.inbound(post, "HELP")
        assert SmsMessage.objects.get().body == "HELP" and not OptOut.objects.exists()

    def test_a_sentence_containing_stop_is_not_an_opt_out(self, twilio, post):
        self.inbound(post, "Please don't stop the music")
        assert not OptOut.objects.exists()


class TestCallCallbacks:
    @pytest.mark.parametrize("twilio_status,ours", sorted(CALL_STATUS.items()))
    def test_every_twilio_call_status_is_mapped(self, twilio, http, post, twilio_status, ours):
        call = CallFactory(external_id="CA1", status="dialing")
        http.get(f"{API}/Calls/CA1.json", json={"sid": "CA1", "status": twilio_status, "duration": "0", "price": "0"})
        post("/webhooks/twilio/call-status/", {"CallSid": "CA1", "CallStatus": twilio_status})
        call.refresh_from_db()
        assert call.status == ours and call.twilio_status == twilio_status

    def test_call_statuses_only_move_forward(self, twilio, http, post):
        call = CallFactory(external_id="CA2", status="dialing")
        http.get(
            f"{API}/Calls/CA2.json", json={"sid": "CA2", "status": "completed", "duration": "61", "price": "-0.028"}
        )
        for status in ["ringing", "completed", "in-progress", "ringing"]:
            post("/webhooks/twilio/call-status/", {"CallSid": "CA2", "CallStatus": status, "CallDuration": "61"})
        call.refresh_from_db()
        assert (call.status, call.duration_seconds) == ("completed", 61)
        assert (call.price_usd, call.price_final) == (Decimal("0.028"), True)
        priced = ProviderCall.objects.get(operation="call.price")
        assert priced.units == {"minutes": 2} and priced.cost_usd == Decimal("0.028")

    def test_recording_and_transcription_attach_to_the_call(self, twilio, post):
        call = CallFactory(external_id="CA3", direction="inbound", owner=None)
        rec = {
            "CallSid": "CA3",
            "RecordingSid": "RE1",
            "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
            "RecordingDuration": "17",
            "RecordingStatus": "completed",
        }
        post("/webhooks/twilio/voice/recording/", rec)
        post(
            "/webhooks/twilio/voice/transcription/",
            {
                "CallSid": "CA3",
                "TranscriptionSid": "TR1",
                "TranscriptionStatus": "completed",
                "TranscriptionText": "Call me back please",
                "RecordingSid": "RE1",
            },
        )
        call.refresh_from_db()
        assert (call.recording_sid, call.recording_duration) == ("RE1", 17)
        assert call.recording_url.endswith("/Recordings/RE1")
        assert (call.transcript, call.transcription_status) == ("Call me back please", "completed")
        assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_a_price_twilio_never_reports_is_booked_from_the_price_table_on_the_last_try(twilio, http, post):
    sms = SmsFactory(external_id="SM7", status="sending", segments=2, price_usd=Decimal("0.0166"))
    http.get(f"{API}/Messages/SM7.json", json=message_json(sid="SM7", status="delivered", segments="2", price=None))
    post(STATUS, status_params("SM7", "delivered"))
    sms.refresh_from_db()
    assert (sms.cost_recorded, sms.price_final, sms.price_usd) == (True, False, Decimal("0.0166"))
    assert ProviderCall.objects.filter(operation="sms.price").count() == 11  # ten polls, then the estimate
    assert sum(ProviderCall.objects.values_list("cost_usd", flat=True)) == Decimal("0.0166")


def test_a_callback_without_a_sid_is_deduplicated_on_its_signed_parameters(twilio, post):
    # #17.8: the unsigned I-Twilio-Idempotency-Token header plays no part: a replay with a new token is a duplicate.
    params = {"RecordingStatus": "completed", "CallSid": "CA5"}
    first = post("/webhooks/twilio/voice/recording/", params, **{"I-Twilio-Idempotency-Token": "tok-1"})
    again = post("/webhooks/twilio/voice/recording/", params, **{"I-Twilio-Idempotency-Token": "tok-2"})
    assert (first.json()["status"], again.json()["status"]) == ("received", "duplicate")
    assert WebhookEvent.objects.get().event_id.startswith("recording.status:signed:")
    other = post("/webhooks/twilio/voice/recording/", {**params, "RecordingStatus": "failed"})
    assert other.json()["status"] == "received"


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_a_messaging_service_id_out_of_from_number():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("messaging", "0007_e164_ascii_digits")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        Sms = executor.loader.project_state(before).apps.get_model("messaging", "SmsMessage")
        service = "MG" + "c" * 32
        called_back = Sms.objects.create(to_number="+15005550006", from_number=service, raw={"From": HUB_NUMBER})
        not_yet = Sms.objects.create(to_number="+15005550006", from_number=service)
        numbered = Sms.objects.create(to_number="+15005550006", from_number=HUB_NUMBER)
        MigrationExecutor(connection).migrate(latest)
        senders = {
            sms.pk: (sms.from_number, sms.messaging_service_sid)
            for sms in SmsMessage.objects.filter(pk__in=[called_back.pk, not_yet.pk, numbered.pk])
        }
        assert senders == {
            called_back.pk: (HUB_NUMBER, service),
            not_yet.pk: ("", service),
            numbered.pk: (HUB_NUMBER, ""),
        }
    finally:
        MigrationExecutor(connection).migrate(latest)


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_the_media_of_inbound_messages_already_received():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("messaging", "0008_sms_messaging_service")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        Sms = executor.loader.project_state(before).apps.get_model("messaging", "SmsMessage")
        inbound = {"direction": "inbound", "to_number": HUB_NUMBER, "status": "received"}
        mms = Sms.objects.create(**inbound, raw={"NumMedia": "3", "MediaUrl0": "https://api.twilio.com/x"})
        sms = Sms.objects.create(**inbound, raw={"NumMedia": "0"})
        odd = Sms.objects.create(**inbound, raw={"NumMedia": "many"})
        outbound = Sms.objects.create(to_number="+15005550006", raw={"NumMedia": "1"})
        MigrationExecutor(connection).migrate(latest)
        counted = dict(
            SmsMessage.objects.filter(pk__in=[mms.pk, sms.pk, odd.pk, outbound.pk]).values_list("pk", "num_media")
        )
        assert counted == {mms.pk: 3, sms.pk: 0, odd.pk: 0, outbound.pk: 0}
    finally:
        MigrationExecutor(connection).migrate(latest)
