from decimal import Decimal
from urllib.parse import parse_qs

import pytest
from responses import matchers

from integrations import limiter
from integrations.models import Alert, ProviderCall
from messaging.models import OptOut, SmsMessage
from messaging.services import segments_estimate
from messaging.tasks import sms_send

from .conftest import ACCOUNT_SID, HUB_NUMBER, MESSAGES_URL, message_json
from .factories import SmsFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/messaging/sms/"


def form(call):
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def send(client, django_capture_on_commit_callbacks, **data):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(URL, {"to": "+15005550006", "body": "Your table is ready.", **data}, format="json")


class TestSend:
    def test_a_queued_sms_is_sent_through_twilio_with_a_status_callback(
        self, twilio, http, eager, user_client, user, django_capture_on_commit_callbacks
    ):
        http.post(
            MESSAGES_URL,
            json=message_json(sid="SM1", status="queued"),
            status=201,
            headers={"Twilio-Request-Id": "RQ123"},
            match=[matchers.request_kwargs_matcher({"timeout": 30.0})],  # a worker's timeout, from the gateway
        )
        response = send(user_client, django_capture_on_commit_callbacks)
        assert response.status_code == 202, response.content
        assert response.json()["status"] == "queued"
        sms = SmsMessage.objects.get()
        assert (sms.status, sms.external_id, sms.owner, sms.segments) == ("sending", "SM1", user, 1)
        sent = form(http.calls[0])
        assert sent["To"] == "+15005550006" and sent["From"] == HUB_NUMBER and sent["Body"] == "Your table is ready."
        assert sent["StatusCallback"] == f"https://hub.example.com/webhooks/twilio/sms-status/?sms={sms.pk}"
        assert http.calls[0].request.headers["Authorization"].startswith("Basic ")
        call = ProviderCall.objects.get()
        assert (call.operation, call.outcome, call.scope, call.provider_request_id) == (
            "sms.send",
            "ok",
            HUB_NUMBER,
            "RQ123",
        )
        # Segments now; the cost is booked when Twilio has priced it (the estimate shows meanwhile).
        assert call.units == {"segments": 1} and call.cost_usd == 0
        assert (call.related_type, call.related_id) == ("messaging.smsmessage", str(sms.pk))
        assert sms.price_usd == Decimal("0.0083") and not sms.price_final

    def test_a_messaging_service_sends_without_a_from_number(
        self, twilio, http, eager, user_client, django_capture_on_commit_callbacks
    ):
        twilio.TWILIO_MESSAGING_SERVICE_SID = "MG" + "c" * 32
        http.post(MESSAGES_URL, json=message_json(sid="SM2", segments="0"), status=201)
        send(user_client, django_capture_on_commit_callbacks, body="x" * 200)
        sent = form(http.calls[0])
        assert sent["MessagingServiceSid"] == "MG" + "c" * 32 and "From" not in sent
        # Twilio reports 0 segments until the service picks a sender: the hub's own count is logged.
        assert ProviderCall.objects.get().units == {"segments": 2}
        assert ProviderCall.objects.get().scope == "MG" + "c" * 32

    def test_twilio_api_base_points_the_sdk_at_an_emulator(
        self, twilio, http, eager, user_client, django_capture_on_commit_callbacks
    ):
        twilio.TWILIO_API_BASE = "http://127.0.0.1:4010"
        http.post(
            f"http://127.0.0.1:4010/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            json=message_json(sid="SM3"),
            status=201,
        )
        send(user_client, django_capture_on_commit_callbacks)
        assert SmsMessage.objects.get().external_id == "SM3"

    def test_an_idempotency_key_repeat_queues_one_message(
        self, twilio, http, eager, user_client, django_capture_on_commit_callbacks
    ):
        http.post(MESSAGES_URL, json=message_json(sid="SM4"), status=201)
        with django_capture_on_commit_callbacks(execute=True):
            first = user_client.post(
                URL, {"to": "+15005550006", "body": "hi"}, format="json", headers={"Idempotency-Key": "k-1"}
            )
            again = user_client.post(
                URL, {"to": "+15005550006", "body": "hi"}, format="json", headers={"Idempotency-Key": "k-1"}
            )
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        assert SmsMessage.objects.count() == 1 and len(http.calls) == 1


class TestValidation:
    @pytest.mark.parametrize("to", ["4155550100", "+0155550100", "+1 415 555 0100", "+1415555010012345", "", "+1-415"])
    def test_numbers_not_in_e164_are_refused(self, twilio, http, user_client, to):
        response = user_client.post(URL, {"to": to, "body": "hi"}, format="json")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid" and "to" in response.json()["fields"]
        assert SmsMessage.objects.count() == 0 and len(http.calls) == 0

    def test_the_hubs_own_number_is_refused_before_anything_is_queued(self, twilio, http, user_client):
        # Twilio refuses To = From (21266) only after the hub has queued and sent it.
        response = user_client.post(URL, {"to": HUB_NUMBER, "body": "hi"}, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["error"] == "invalid" and "own number" in response.json()["fields"]["to"][0]
        assert SmsMessage.objects.count() == 0 and len(http.calls) == 0

    def test_a_body_over_1600_characters_is_refused(self, twilio, user_client):
        response = user_client.post(URL, {"to": "+15005550006", "body": "x" * 1601}, format="json")
        assert response.status_code == 400 and "body" in response.json()["fields"]

    def test_a_body_of_1600_characters_is_accepted(self, twilio, user_client):
        response = user_client.post(URL, {"to": "+15005550006", "body": "x" * 1600}, format="json")
        assert response.status_code == 202 and response.json()["segments"] == 11

    def test_an_unconfigured_twilio_answers_503_and_queues_nothing(self, settings, user_client):
        settings.TWILIO_ACCOUNT_SID = ""
        response = user_client.post(URL, {"to": "+15005550006", "body": "hi"}, format="json")
        assert response.status_code == 503
        assert (
            response.json()["error"] == "provider_not_configured" and "TWILIO_ACCOUNT_SID" in response.json()["missing"]
        )
        assert SmsMessage.objects.count() == 0

    @pytest.mark.parametrize(
        "to",
        ["+1500555000\uff16", "+1500555000\u0666", "+1\u0665\u0660\u0660\u0665\u0665\u0665\u0660\u0660\u0660\u0666"],
    )
    def test_a_number_with_digits_of_another_script_is_refused(self, twilio, http, user_client, to):
        # Python's \d matches them: the number, opted out in ASCII digits, would have been queued.
        OptOut.objects.create(phone_number="+15005550006", active=True, keyword="STOP")
        response = user_client.post(URL, {"to": to, "body": "hi"}, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["error"] == "invalid" and "to" in response.json()["fields"]
        assert SmsMessage.objects.count() == 0 and len(http.calls) == 0

    def test_a_number_that_sent_stop_cannot_be_messaged(self, twilio, http, user_client):
        OptOut.objects.create(phone_number="+15005550006", active=True, keyword="STOP")
        response = user_client.post(URL, {"to": "+15005550006", "body": "hi"}, format="json")
        assert response.status_code == 409
        assert response.json()["error"] == "recipient_opted_out"
        assert SmsMessage.objects.count() == 0 and len(http.calls) == 0


class TestOwnership:
    def test_another_users_message_is_not_found(self, twilio, user_client, other_user):
        theirs = SmsFactory(owner=other_user)
        assert user_client.get(f"{URL}{theirs.pk}/").status_code == 404

    def test_the_list_shows_only_my_messages(self, twilio, user_client, user, other_user):
        mine = SmsFactory(owner=user)
        SmsFactory(owner=other_user)
        body = user_client.get(URL).json()
        assert [m["id"] for m in body["results"]] == [mine.pk]

    def test_retrieve_shows_status_segments_and_price(self, twilio, user_client, user):
        mine = SmsFactory(owner=user, status="delivered", external_id="SM9", segments=2, price_usd=Decimal("0.0158"))
        body = user_client.get(f"{URL}{mine.pk}/").json()
        assert (body["status"], body["sid"], body["segments"], body["price_usd"]) == ("delivered", "SM9", 2, "0.01580")


class TestTaskSafety:
    def test_a_429_from_twilio_is_retried_with_backoff(self, twilio, http, monkeypatch):
        from integrations import task_base

        delays = []
        original = task_base.backoff_seconds
        monkeypatch.setattr(task_base, "backoff_seconds", lambda *a, **k: delays.append((a, k)) or original(*a, **k))
        http.post(MESSAGES_URL, json={"code": 20429, "message": "Too Many Requests", "status": 429}, status=429)
        http.post(MESSAGES_URL, json=message_json(sid="SM5"), status=201)
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert (sms.status, sms.external_id) == ("sending", "SM5")
        assert list(ProviderCall.objects.order_by("id").values_list("attempt", "outcome", "http_status")) == [
            (1, "rate_limited", 429),
            (2, "ok", 201),
        ]
        assert delays == [((0,), {"base": 0.01, "cap": 0.01, "retry_after": None})]

    def test_a_429_with_retry_after_pauses_the_sender_and_nothing_counts_as_sent(self, twilio, http):
        from integrations.errors import ProviderRateLimited

        http.post(
            MESSAGES_URL,
            json={"code": 20429, "message": "Too Many Requests"},
            status=429,
            headers={"Retry-After": "30"},
        )
        sms = SmsFactory()
        with pytest.raises(ProviderRateLimited) as err:
            sms_send.run(sms.pk)
        assert err.value.retry_after == 30 and err.value.code == "20429"
        assert limiter.blocked_for("twilio", HUB_NUMBER) > 25
        sms.refresh_from_db()
        assert sms.status == "queued"  # Twilio refused it: back in our queue, nothing in doubt

    def test_an_invalid_number_fails_permanently_without_retries(self, twilio, http):
        http.post(
            MESSAGES_URL, json={"code": 21211, "message": "The 'To' number is not a valid phone number."}, status=400
        )
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert (sms.status, sms.error_code) == ("failed", "21211")
        assert "not a valid phone number" in sms.error_message
        assert ProviderCall.objects.count() == 1 and Alert.objects.filter(kind="task_failed").count() == 1

    def test_twilio_refusing_an_unsubscribed_recipient_records_the_opt_out(self, twilio, http):
        http.post(
            MESSAGES_URL, json={"code": 21610, "message": "Attempt to send to unsubscribed recipient"}, status=400
        )
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])
        assert SmsMessage.objects.get().status == "failed"
        assert OptOut.objects.get(phone_number=sms.to_number).active

    def test_a_redelivered_task_after_a_worker_died_mid_call_never_sends_twice(self, twilio, http):
        import datetime as dt

        from django.utils import timezone

        # The row a dead worker left behind: it had started the create call a while ago.
        started = timezone.now() - dt.timedelta(minutes=5)
        sms = SmsFactory(status="sending", send_doubt="in_flight", send_started_at=started, send_attempted_at=started)
        http.get(
            MESSAGES_URL,
            json={
                "messages": [
                    message_json(
                        sid="SMdead", body=sms.body, date_created=started.strftime("%a, %d %b %Y %H:%M:%S +0000")
                    )
                ],
                "uri": "/x",
            },
        )
        assert sms_send.apply(args=[sms.pk]).get() == "found"
        assert [c.request.method for c in http.calls] == ["GET"]  # looked up, never created again
        assert sms_send.acks_late and sms_send.reject_on_worker_lost

    def test_a_task_for_a_message_already_handed_to_twilio_does_nothing(self, twilio, http):
        sms = SmsFactory(status="sending", external_id="SM6")
        assert sms_send.apply(args=[sms.pk]).get() == "skipped"
        assert len(http.calls) == 0

    def test_a_message_queued_before_its_recipient_sent_stop_is_not_sent(self, twilio, http):
        sms = SmsFactory()
        OptOut.objects.create(phone_number=sms.to_number, active=True)
        assert sms_send.apply(args=[sms.pk]).get() == "opted_out"
        assert SmsMessage.objects.get().status == "failed" and len(http.calls) == 0


def test_a_burst_of_500_is_paced_per_sender_without_dropping_one(twilio, http, monkeypatch):
    """At the default 1 message/s per sender: every message is sent once, each deferral books the next slot."""
    from integrations import localstate
    from integrations.redis import get_client
    from integrations.task_base import ProviderTask

    countdowns = []
    original = ProviderTask._defer

    def spy(self, args, kwargs, *, countdown, prepaid):
        countdowns.append(countdown)
        return original(self, args, kwargs, countdown=countdown, prepaid=prepaid)

    # When each token falls due, on the limiter's own clock (the bucket's timestamp of the take, Redis's TIME
    # or this machine's), so a busy machine pausing the test between two steps cannot move a slot.
    due = []
    take = limiter.take

    def timed_take(provider, scope=None, **kwargs):
        decision = take(provider, scope, **kwargs)
        if provider == "twilio" and (decision.granted or decision.reserved):
            bucket = limiter._keys(provider, kwargs.get("bucket", "requests"), scope)[0]
            client = get_client()
            taken_at = float(client.hget(bucket, "ts")) / 1000 if client is not None else localstate.read(bucket)["ts"]
            due.append(taken_at + decision.wait)
        return decision

    monkeypatch.setattr(ProviderTask, "_defer", spy)
    monkeypatch.setattr(limiter, "take", timed_take)
    http.post(MESSAGES_URL, json=message_json(sid="SMburst"), status=201)
    msgs = SmsFactory.create_batch(500)
    for sms in msgs:
        SmsMessage.objects.filter(pk=sms.pk).update(external_id=None)
        http.replace("POST", MESSAGES_URL, json=message_json(sid=f"SM{sms.pk}"), status=201)
        sms_send.apply(args=[sms.pk])
    assert SmsMessage.objects.filter(status="sending", external_id__startswith="SM").count() == 500
    assert len(http.calls) == 500
    assert ProviderCall.objects.filter(outcome="ok").count() == 500 and not ProviderCall.objects.exclude(outcome="ok")
    # The first used the bucket's one token; each of the other 499 was deferred once and booked a token:
    # the nth booked the one due n seconds after the first (then ran with it prepaid, taking nothing more).
    assert len(countdowns) == 499 and all(c > 0 for c in countdowns)
    assert len(due) == 500
    slots = [when - due[0] for when in due[1:]]
    assert all(abs(slot - n) < 0.01 for n, slot in enumerate(slots, start=1)), slots[:5]


@pytest.mark.parametrize(
    "body,segments",
    [
        ("hi", 1),
        ("x" * 160, 1),
        ("x" * 161, 2),
        ("x" * 306, 2),
        ("x" * 307, 3),
        ("é" * 160, 1),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("😀" * 35, 1),
        ("😀" * 36, 2),
        ("ж" * 71, 2),
    ],
)
def test_segments_are_counted_like_twilio(body, segments):
    assert segments_estimate(body) == segments
