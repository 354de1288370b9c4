"""Twilio's Messages API takes no idempotency key: a create whose answer was lost
(timeout, connection error, 5xx, a worker that died mid-call) is looked up on
Twilio before the message is created again."""

import datetime as dt
from email.utils import format_datetime

import pytest
import requests
from celery.exceptions import Retry
from django.utils import timezone
from responses import matchers

from integrations.models import ProviderCall
from messaging.models import SmsMessage
from messaging.services import LOOKUP_CLOCK_SKEW
from messaging.tasks import sms_send

from .conftest import HUB_NUMBER, MESSAGES_URL, message_json
from .factories import SmsFactory

pytestmark = pytest.mark.django_db

TO = "+15005550006"
BODY = "Your table is ready."


def rfc2822(when):
    return format_datetime(when.astimezone(dt.UTC), usegmt=True)


def listed(sid, *, body=BODY, created=None, status="sent", **extra):
    return message_json(
        sid=sid, status=status, body=body, to=TO, date_created=rfc2822(created or timezone.now()), **extra
    )


def page(*messages):
    return {
        "messages": list(messages),
        "first_page_uri": "/x?Page=0",
        "next_page_uri": None,
        "previous_page_uri": None,
        "page": 0,
        "page_size": 1000,
        "start": 0,
        "end": max(len(messages) - 1, 0),
        "uri": "/x?Page=0",
    }


def lookup_query(*, dated=True, sender=HUB_NUMBER):
    query = {"To": TO, "PageSize": "1000"}
    if sender:
        query["From"] = sender
    if dated:
        query["DateSent>"] = (timezone.now() - LOOKUP_CLOCK_SKEW).astimezone(dt.UTC).date().isoformat()
    return [matchers.query_param_matcher(query)]


def posts(http):
    return [c for c in http.calls if c.request.method == "POST"]


def gets(http):
    return [c for c in http.calls if c.request.method == "GET"]


def operations():
    return list(ProviderCall.objects.order_by("id").values_list("operation", "outcome"))


class TestRetryAfterALostAnswer:
    def test_a_timed_out_create_found_on_twilio_by_the_retry_is_sent_once(
        self, twilio, http, eager, user_client, django_capture_on_commit_callbacks
    ):
        http.post(MESSAGES_URL, body=requests.exceptions.ReadTimeout("read timed out"))
        http.get(MESSAGES_URL, json=page(listed("SMlost")), match=lookup_query())
        with django_capture_on_commit_callbacks(execute=True):
            response = user_client.post("/api/v1/messaging/sms/", {"to": TO, "body": BODY}, format="json")
        assert response.status_code == 202
        sms = SmsMessage.objects.get()
        assert len(posts(http)) == 1 and len(gets(http)) == 1
        assert (sms.status, sms.external_id, sms.send_doubt) == ("sent", "SMlost", "")
        assert operations() == [("sms.send", "timeout"), ("sms.lookup", "ok")]

    @pytest.mark.parametrize(
        "lost",
        [
            {"body": requests.exceptions.ConnectionError("connection reset by peer")},
            {"json": {"code": 20500, "message": "Internal Server Error"}, "status": 500},
            {"json": {"code": 20503, "message": "Service Unavailable"}, "status": 503},
        ],
        ids=["connection_error", "500", "503"],
    )
    def test_a_connection_error_or_5xx_is_looked_up_too(self, twilio, http, lost):
        http.post(MESSAGES_URL, **lost)
        http.get(MESSAGES_URL, json=page(listed("SMlost", status="queued", segments="2")), match=lookup_query())
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert len(posts(http)) == 1
        assert (sms.status, sms.external_id, sms.segments) == ("sending", "SMlost", 2)

    def test_nothing_found_on_twilio_means_the_retry_creates_it_once(self, twilio, http):
        http.post(MESSAGES_URL, body=requests.exceptions.ReadTimeout("read timed out"))
        http.post(MESSAGES_URL, json=message_json(sid="SMnew", status="queued"), status=201)
        http.get(MESSAGES_URL, json=page(), match=lookup_query())
        http.get(MESSAGES_URL, json=page(), match=lookup_query(dated=False))
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])  # the second create waits for the sender's next token, inline
        sms.refresh_from_db()
        assert len(posts(http)) == 2 and len(gets(http)) == 2
        assert (sms.status, sms.external_id, sms.send_doubt) == ("sending", "SMnew", "")
        assert operations() == [
            ("sms.send", "timeout"),
            ("sms.lookup", "ok"),
            ("sms.lookup", "ok"),
            ("sms.send", "ok"),
        ]

    def test_a_message_twilio_has_not_sent_yet_is_found_without_the_date_sent_filter(self, twilio, http):
        http.post(MESSAGES_URL, body=requests.exceptions.ReadTimeout("read timed out"))
        http.get(MESSAGES_URL, json=page(), match=lookup_query())
        http.get(
            MESSAGES_URL,
            json=page(listed("SMqueued", status="queued", date_sent=None)),
            match=lookup_query(dated=False),
        )
        sms = SmsFactory()
        assert sms_send.apply(args=[sms.pk]).get() == "found"
        sms.refresh_from_db()
        assert len(posts(http)) == 1 and sms.external_id == "SMqueued"

    def test_a_sid_another_row_holds_is_never_adopted(self, twilio, http):
        other = SmsFactory(status="sent", external_id="SMother")
        http.post(MESSAGES_URL, body=requests.exceptions.ReadTimeout("read timed out"))
        http.post(MESSAGES_URL, json=message_json(sid="SMnew"), status=201)
        http.get(MESSAGES_URL, json=page(listed("SMother")))
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        other.refresh_from_db()
        assert len(posts(http)) == 2
        assert sms.external_id == "SMnew" and other.external_id == "SMother"

    @pytest.mark.parametrize(
        "decoy",
        [
            {"body": "Your table is ready!"},
            {"created": "before"},
            {"direction": "inbound"},
        ],
        ids=["another_body", "created_before_our_first_attempt", "inbound"],
    )
    def test_a_message_that_does_not_match_exactly_is_not_adopted(self, twilio, http, decoy):
        if decoy.get("created") == "before":
            decoy = {"created": timezone.now() - LOOKUP_CLOCK_SKEW - dt.timedelta(minutes=1)}
        http.post(MESSAGES_URL, body=requests.exceptions.ReadTimeout("read timed out"))
        http.post(MESSAGES_URL, json=message_json(sid="SMnew"), status=201)
        http.get(MESSAGES_URL, json=page(listed("SMdecoy", **decoy)))
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert len(posts(http)) == 2 and sms.external_id == "SMnew"

    def test_the_window_starts_at_the_first_attempt_not_the_latest(self, twilio, http):
        started = timezone.now() - dt.timedelta(minutes=30)
        sms = SmsFactory(
            status="sending", send_doubt="ambiguous", send_started_at=started, send_attempted_at=timezone.now()
        )
        http.get(MESSAGES_URL, json=page(listed("SMfirst", created=started + dt.timedelta(seconds=1))))
        assert sms_send.apply(args=[sms.pk]).get() == "found"
        assert SmsMessage.objects.get(pk=sms.pk).external_id == "SMfirst" and not posts(http)

    def test_a_messaging_service_is_matched_on_its_sid_not_a_from_number(self, twilio, http):
        service = "MG" + "c" * 32
        http.post(MESSAGES_URL, body=requests.exceptions.ReadTimeout("read timed out"))
        http.get(
            MESSAGES_URL,
            json=page(
                listed("SMelse", messaging_service_sid="MG" + "d" * 32),
                listed("SMmine", messaging_service_sid=service),
            ),
            match=lookup_query(sender=None),
        )
        sms = SmsFactory(from_number="", messaging_service_sid=service)
        sms_send.apply(args=[sms.pk])
        assert SmsMessage.objects.get(pk=sms.pk).external_id == "SMmine" and len(posts(http)) == 1

    def test_a_failed_lookup_is_retried_and_still_never_creates_blindly(self, twilio, http):
        http.post(MESSAGES_URL, body=requests.exceptions.ReadTimeout("read timed out"))
        http.get(MESSAGES_URL, json={"code": 20500, "message": "Internal Server Error"}, status=500)
        http.get(MESSAGES_URL, json=page(listed("SMlost")))
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert len(posts(http)) == 1 and sms.external_id == "SMlost"
        assert operations() == [("sms.send", "timeout"), ("sms.lookup", "error"), ("sms.lookup", "ok")]

    def test_a_message_staff_requeue_after_giving_up_in_doubt_is_looked_up_first(self, twilio, http):
        started = timezone.now() - dt.timedelta(hours=1)
        sms = SmsFactory(status="queued", send_doubt="ambiguous", send_started_at=started, send_attempted_at=started)
        http.get(MESSAGES_URL, json=page(listed("SMearlier", created=started)))
        assert sms_send.apply(args=[sms.pk]).get() == "found"
        sms.refresh_from_db()
        assert (sms.status, sms.external_id) == ("sent", "SMearlier") and not posts(http)


class TestCleanAnswersNeedNoLookup:
    def test_a_400_fails_permanently_without_a_lookup(self, twilio, http):
        http.post(
            MESSAGES_URL, json={"code": 21211, "message": "The 'To' number is not a valid phone number."}, status=400
        )
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert (sms.status, sms.error_code, sms.send_doubt) == ("failed", "21211", "")
        assert len(http.calls) == 1 and not gets(http)

    def test_a_429_from_twilio_retries_the_create_without_a_lookup(self, twilio, http):
        http.post(MESSAGES_URL, json={"code": 20429, "message": "Too Many Requests"}, status=429)
        http.post(MESSAGES_URL, json=message_json(sid="SM429"), status=201)
        sms = SmsFactory()
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert sms.external_id == "SM429" and len(posts(http)) == 2 and not gets(http)

    def test_a_first_attempt_records_when_it_started(self, twilio, http):
        http.post(MESSAGES_URL, json=message_json(sid="SM1"), status=201)
        sms = SmsFactory()
        before = timezone.now()
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert before <= sms.send_started_at == sms.send_attempted_at <= timezone.now()
        assert sms.send_doubt == ""


class TestRedelivery:
    def test_a_redelivered_task_whose_worker_died_mid_call_adopts_what_twilio_has(self, twilio, http):
        long_ago = timezone.now() - dt.timedelta(minutes=5)
        sms = SmsFactory(status="sending", send_doubt="in_flight", send_started_at=long_ago, send_attempted_at=long_ago)
        http.get(MESSAGES_URL, json=page(listed("SMdead", created=long_ago)))
        assert sms_send.apply(args=[sms.pk]).get() == "found"
        assert SmsMessage.objects.get(pk=sms.pk).external_id == "SMdead" and not posts(http)

    def test_a_redelivered_task_sends_when_twilio_never_got_the_message(self, twilio, http):
        long_ago = timezone.now() - dt.timedelta(minutes=5)
        sms = SmsFactory(status="sending", send_doubt="in_flight", send_started_at=long_ago, send_attempted_at=long_ago)
        http.get(MESSAGES_URL, json=page())
        http.post(MESSAGES_URL, json=message_json(sid="SMnew"), status=201)
        assert sms_send.apply(args=[sms.pk]).get() == "sent"
        assert SmsMessage.objects.get(pk=sms.pk).external_id == "SMnew" and len(posts(http)) == 1

    def test_a_redelivery_while_the_last_call_may_still_run_waits_for_it_to_end(self, twilio, http):
        sms = SmsFactory(status="sending", send_doubt="in_flight", send_attempted_at=timezone.now())
        with pytest.raises(Retry):
            sms_send.run(sms.pk)
        assert len(http.calls) == 0 and SmsMessage.objects.get(pk=sms.pk).send_doubt == "in_flight"

    def test_a_worker_that_died_before_calling_twilio_leaves_nothing_to_look_up(self, twilio, http):
        sms = SmsFactory(status="sending")  # moved to sending, died before the create call
        http.post(MESSAGES_URL, json=message_json(sid="SM7"), status=201)
        assert sms_send.apply(args=[sms.pk]).get() == "sent"
        assert len(http.calls) == 1 and not gets(http)

    def test_a_second_run_while_the_create_call_is_in_flight_never_creates(self, twilio, http):
        import json

        from messaging import services

        sms = SmsFactory()
        seen = []

        def twilio_answers(request):
            # Another worker picks the same message up while this create call is still running.
            with pytest.raises(services.SendInFlight) as err:
                services.sms_send(sms_id=sms.pk)
            seen.append(err.value.wait)
            return 201, {}, json.dumps(message_json(sid="SM8"))

        http.add_callback("POST", MESSAGES_URL, callback=twilio_answers)
        assert services.sms_send(sms_id=sms.pk) == "sent"
        assert len(posts(http)) == 1 and not gets(http)
        assert seen and 30 < seen[0] <= 35  # the worker timeout plus a margin, from when the call started


class TestTimesOfAMessageTwilioAlreadySent:
    """A message that reaches the hub already past sending (found by the lookup, or a create answer that says so)
    has the times Twilio's Message resource gives: sent_at from date_sent, delivered_at from date_updated (the
    resource has no delivery time of its own; its last change is the delivery receipt, or a later read receipt)."""

    def test_a_lost_send_found_delivered_has_its_sent_and_delivered_times(self, twilio, http):
        sent = (timezone.now() - dt.timedelta(minutes=4)).replace(microsecond=0)
        delivered = sent + dt.timedelta(seconds=7)
        long_ago = timezone.now() - dt.timedelta(minutes=5)
        sms = SmsFactory(status="sending", send_doubt="ambiguous", send_started_at=long_ago, send_attempted_at=long_ago)
        http.get(
            MESSAGES_URL,
            json=page(
                listed(
                    "SMfound",
                    status="delivered",
                    created=long_ago,
                    date_sent=rfc2822(sent),
                    date_updated=rfc2822(delivered),
                )
            ),
        )
        assert sms_send.apply(args=[sms.pk]).get() == "found"
        sms.refresh_from_db()
        assert (sms.status, sms.sent_at, sms.delivered_at) == ("delivered", sent, delivered)

    @pytest.mark.parametrize("status", ["sent", "undelivered"])
    def test_a_lost_send_found_sent_or_undelivered_has_its_sent_time_only(self, twilio, http, status):
        sent = (timezone.now() - dt.timedelta(minutes=4)).replace(microsecond=0)
        long_ago = timezone.now() - dt.timedelta(minutes=5)
        sms = SmsFactory(status="sending", send_doubt="ambiguous", send_started_at=long_ago, send_attempted_at=long_ago)
        http.get(
            MESSAGES_URL,
            json=page(
                listed(
                    "SMfound",
                    status=status,
                    created=long_ago,
                    date_sent=rfc2822(sent),
                    date_updated=rfc2822(sent + dt.timedelta(seconds=9)),
                )
            ),
        )
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert (sms.status, sms.sent_at, sms.delivered_at) == (status, sent, None)

    def test_a_create_answer_that_says_sent_has_twilios_sent_time(self, twilio, http):
        sent = timezone.now().replace(microsecond=0)
        http.post(MESSAGES_URL, json=message_json(sid="SMnow", status="sent", date_sent=rfc2822(sent)), status=201)
        sms = SmsFactory()
        assert sms_send.apply(args=[sms.pk]).get() == "sent"
        sms.refresh_from_db()
        assert (sms.status, sms.sent_at, sms.delivered_at) == ("sent", sent, None)

    def test_a_queued_message_found_by_the_lookup_has_no_sent_time(self, twilio, http):
        long_ago = timezone.now() - dt.timedelta(minutes=5)
        sms = SmsFactory(status="sending", send_doubt="ambiguous", send_started_at=long_ago, send_attempted_at=long_ago)
        http.get(MESSAGES_URL, json=page(listed("SMq", status="queued", created=long_ago, date_sent=None)))
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert (sms.status, sms.external_id, sms.sent_at, sms.delivered_at) == ("sending", "SMq", None, None)

    def test_an_earlier_sent_time_the_row_has_is_kept(self, twilio, http):
        # Whatever gave the row its time first, an earlier one is never moved by a later one Twilio reports.
        earlier = (timezone.now() - dt.timedelta(minutes=4, seconds=30)).replace(microsecond=0)
        long_ago = timezone.now() - dt.timedelta(minutes=5)
        sms = SmsFactory(
            status="sending",
            send_doubt="ambiguous",
            send_started_at=long_ago,
            send_attempted_at=long_ago,
            sent_at=earlier,
        )
        later = earlier + dt.timedelta(seconds=30)
        http.get(
            MESSAGES_URL,
            json=page(
                listed(
                    "SMfound",
                    status="delivered",
                    created=long_ago,
                    date_sent=rfc2822(later),
                    date_updated=rfc2822(later),
                )
            ),
        )
        sms_send.apply(args=[sms.pk])
        sms.refresh_from_db()
        assert (sms.status, sms.sent_at, sms.delivered_at) == ("delivered", earlier, later)
