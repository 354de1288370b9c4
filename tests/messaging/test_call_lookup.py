"""Twilio's Calls API takes no idempotency key: a create whose answer was lost
(timeout, connection error, 5xx, a worker that died mid-call) is looked up on
Twilio before the call is placed again, since a second phone call is worse than a second SMS."""

import datetime as dt
import json
from email.utils import format_datetime

import pytest
import requests
from celery.exceptions import Retry
from django.utils import timezone
from responses import matchers

from integrations.models import ProviderCall
from messaging import services
from messaging.models import CallLog
from messaging.services import LOOKUP_CLOCK_SKEW
from messaging.tasks import call_place

from .conftest import CALLS_URL, HUB_NUMBER, call_json, twilio_post
from .factories import CallFactory

pytestmark = pytest.mark.django_db

TO = "+15005550006"
TIMEOUT = {"body": requests.exceptions.ReadTimeout("read timed out")}


def rfc2822(when):
    return format_datetime(when.astimezone(dt.UTC), usegmt=True)


def listed(sid, *, created=None, status="ringing", direction="outbound-api", **extra):
    return call_json(
        sid=sid, status=status, direction=direction, date_created=rfc2822(created or timezone.now()), **extra
    )


def page(*calls):
    return {
        "calls": list(calls),
        "first_page_uri": "/x?Page=0",
        "next_page_uri": None,
        "previous_page_uri": None,
        "page": 0,
        "page_size": 1000,
        "start": 0,
        "end": max(len(calls) - 1, 0),
        "uri": "/x?Page=0",
    }


def lookup_query(*, started=True, since=None):
    query = {"To": TO, "From": HUB_NUMBER, "PageSize": "1000"}
    if started:
        since = since or timezone.now()
        query["StartTime>"] = (since - LOOKUP_CLOCK_SKEW).astimezone(dt.UTC).date().isoformat()
    return [matchers.query_param_matcher(query)]


def posts(http):
    return [c for c in http.calls if c.request.method == "POST"]


def gets(http):
    return [c for c in http.calls if c.request.method == "GET"]


def operations():
    return list(ProviderCall.objects.order_by("id").values_list("operation", "outcome"))


class TestRetryAfterALostAnswer:
    def test_a_timed_out_create_found_on_twilio_by_the_retry_is_placed_once(
        self, twilio, http, eager, user_client, django_capture_on_commit_callbacks
    ):
        http.post(CALLS_URL, **TIMEOUT)
        http.get(CALLS_URL, json=page(listed("CAlost")), match=lookup_query())
        with django_capture_on_commit_callbacks(execute=True):
            response = user_client.post(
                "/api/v1/messaging/calls/", {"to": TO, "say": "Your order shipped."}, format="json"
            )
        assert response.status_code == 202, response.content
        call = CallLog.objects.get()
        assert len(posts(http)) == 1 and len(gets(http)) == 1
        assert (call.status, call.external_id, call.twilio_status, call.send_doubt) == (
            "ringing",
            "CAlost",
            "ringing",
            "",
        )
        assert operations() == [("call.create", "timeout"), ("call.lookup", "ok")]

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
        http.post(CALLS_URL, **lost)
        http.get(CALLS_URL, json=page(listed("CAlost", status="queued")), match=lookup_query())
        call = CallFactory()
        assert call_place.apply(args=[call.pk]).get() == "found"
        call.refresh_from_db()
        assert len(posts(http)) == 1
        assert (call.status, call.external_id, call.twilio_status) == ("dialing", "CAlost", "queued")

    def test_nothing_found_on_twilio_means_the_retry_places_it_once(self, twilio, http):
        http.post(CALLS_URL, **TIMEOUT)
        http.post(CALLS_URL, json=call_json(sid="CAnew", status="queued"), status=201)
        http.get(CALLS_URL, json=page(), match=lookup_query())
        http.get(CALLS_URL, json=page(), match=lookup_query(started=False))
        call = CallFactory()
        call_place.apply(args=[call.pk])  # the second create waits for the sender's next token, inline
        call.refresh_from_db()
        assert len(posts(http)) == 2 and len(gets(http)) == 2
        assert (call.status, call.external_id, call.send_doubt) == ("dialing", "CAnew", "")
        assert operations() == [
            ("call.create", "timeout"),
            ("call.lookup", "ok"),
            ("call.lookup", "ok"),
            ("call.create", "ok"),
        ]

    def test_a_call_twilio_has_not_dialed_yet_is_found_without_the_start_time_filter(self, twilio, http):
        http.post(CALLS_URL, **TIMEOUT)
        http.get(CALLS_URL, json=page(), match=lookup_query())
        http.get(
            CALLS_URL,
            json=page(listed("CAqueued", status="queued", start_time=None)),
            match=lookup_query(started=False),
        )
        call = CallFactory()
        assert call_place.apply(args=[call.pk]).get() == "found"
        call.refresh_from_db()
        assert len(posts(http)) == 1 and call.external_id == "CAqueued"

    def test_a_sid_another_row_holds_is_never_adopted(self, twilio, http):
        other = CallFactory(status="completed", external_id="CAother")
        http.post(CALLS_URL, **TIMEOUT)
        http.post(CALLS_URL, json=call_json(sid="CAnew"), status=201)
        http.get(CALLS_URL, json=page(listed("CAother", status="completed")))
        call = CallFactory()
        call_place.apply(args=[call.pk])
        call.refresh_from_db()
        other.refresh_from_db()
        assert len(posts(http)) == 2
        assert call.external_id == "CAnew" and other.external_id == "CAother"

    @pytest.mark.parametrize(
        "decoy",
        [{"created": "before"}, {"direction": "inbound"}, {"direction": "outbound-dial"}],
        ids=["created_before_our_first_attempt", "inbound", "a_dialed_leg_not_an_api_call"],
    )
    def test_a_call_that_does_not_match_is_not_adopted(self, twilio, http, decoy):
        if decoy.get("created") == "before":
            decoy = {"created": timezone.now() - LOOKUP_CLOCK_SKEW - dt.timedelta(minutes=1)}
        http.post(CALLS_URL, **TIMEOUT)
        http.post(CALLS_URL, json=call_json(sid="CAnew"), status=201)
        http.get(CALLS_URL, json=page(listed("CAdecoy", **decoy)))
        call = CallFactory()
        call_place.apply(args=[call.pk])
        call.refresh_from_db()
        assert len(posts(http)) == 2 and call.external_id == "CAnew"

    def test_the_oldest_match_wins(self, twilio, http):
        started = timezone.now() - dt.timedelta(minutes=10)
        call = CallFactory(status="dialing", send_doubt="ambiguous", send_started_at=started, send_attempted_at=started)
        http.get(
            CALLS_URL,
            json=page(
                listed("CAnewer", created=started + dt.timedelta(minutes=5)),
                listed("CAolder", created=started + dt.timedelta(seconds=2)),
            ),
        )
        assert call_place.apply(args=[call.pk]).get() == "found"
        assert CallLog.objects.get(pk=call.pk).external_id == "CAolder" and not posts(http)

    def test_a_call_created_after_our_last_attempt_could_have_ended_is_not_adopted(self, twilio, http):
        started = timezone.now() - dt.timedelta(minutes=20)
        call = CallFactory(status="dialing", send_doubt="ambiguous", send_started_at=started, send_attempted_at=started)
        http.get(CALLS_URL, json=page(listed("CAlater", created=started + dt.timedelta(minutes=10))))
        http.post(CALLS_URL, json=call_json(sid="CAours"), status=201)
        call_place.apply(args=[call.pk])
        call.refresh_from_db()
        assert call.external_id == "CAours" and len(posts(http)) == 1

    def test_the_window_starts_at_the_first_attempt_not_the_latest(self, twilio, http):
        started = timezone.now() - dt.timedelta(minutes=30)
        call = CallFactory(
            status="dialing", send_doubt="ambiguous", send_started_at=started, send_attempted_at=timezone.now()
        )
        http.get(CALLS_URL, json=page(listed("CAfirst", created=started + dt.timedelta(seconds=1))))
        assert call_place.apply(args=[call.pk]).get() == "found"
        assert CallLog.objects.get(pk=call.pk).external_id == "CAfirst" and not posts(http)

    def test_a_found_call_that_is_already_over_takes_its_final_status(self, twilio, http):
        started = timezone.now() - dt.timedelta(minutes=10)
        call = CallFactory(status="dialing", send_doubt="ambiguous", send_started_at=started, send_attempted_at=started)
        http.get(CALLS_URL, json=page(listed("CAdone", created=started, status="completed", duration="42")))
        assert call_place.apply(args=[call.pk]).get() == "found"
        call.refresh_from_db()
        assert (call.status, call.external_id, call.duration_seconds) == ("completed", "CAdone", 42)

    def test_a_failed_lookup_is_retried_and_still_never_dials_blindly(self, twilio, http):
        http.post(CALLS_URL, **TIMEOUT)
        http.get(CALLS_URL, json={"code": 20500, "message": "Internal Server Error"}, status=500)
        http.get(CALLS_URL, json=page(listed("CAlost")))
        call = CallFactory()
        call_place.apply(args=[call.pk])
        call.refresh_from_db()
        assert len(posts(http)) == 1 and call.external_id == "CAlost"
        assert operations() == [("call.create", "timeout"), ("call.lookup", "error"), ("call.lookup", "ok")]


class TestCleanAnswersNeedNoLookup:
    def test_a_400_fails_permanently_without_a_lookup(self, twilio, http):
        http.post(
            CALLS_URL, json={"code": 21211, "message": "The 'To' number is not a valid phone number."}, status=400
        )
        call = CallFactory()
        call_place.apply(args=[call.pk])
        call.refresh_from_db()
        assert (call.status, call.error_code, call.send_doubt) == ("failed", "21211", "")
        assert len(http.calls) == 1 and not gets(http)

    def test_a_429_from_twilio_places_again_without_a_lookup(self, twilio, http):
        http.post(CALLS_URL, json={"code": 20429, "message": "Too Many Requests"}, status=429)
        http.post(CALLS_URL, json=call_json(sid="CA429"), status=201)
        call = CallFactory()
        call_place.apply(args=[call.pk])
        call.refresh_from_db()
        assert call.external_id == "CA429" and len(posts(http)) == 2 and not gets(http)

    def test_a_first_attempt_records_when_it_started(self, twilio, http):
        http.post(CALLS_URL, json=call_json(sid="CA1"), status=201)
        call = CallFactory()
        before = timezone.now()
        assert call_place.apply(args=[call.pk]).get() == "placed"
        call.refresh_from_db()
        assert before <= call.send_started_at == call.send_attempted_at <= timezone.now()
        assert (call.status, call.external_id, call.send_doubt) == ("dialing", "CA1", "")


class TestRedelivery:
    def test_a_redelivery_after_the_in_flight_call_timed_out_looks_it_up(self, twilio, http):
        long_ago = timezone.now() - dt.timedelta(minutes=5)
        call = CallFactory(
            status="dialing", send_doubt="in_flight", send_started_at=long_ago, send_attempted_at=long_ago
        )
        http.get(CALLS_URL, json=page(listed("CAdead", created=long_ago)), match=lookup_query(since=long_ago))
        assert call_place.apply(args=[call.pk]).get() == "found"
        assert CallLog.objects.get(pk=call.pk).external_id == "CAdead" and not posts(http)

    def test_a_redelivery_places_the_call_when_twilio_never_got_it(self, twilio, http):
        long_ago = timezone.now() - dt.timedelta(minutes=5)
        call = CallFactory(
            status="dialing", send_doubt="in_flight", send_started_at=long_ago, send_attempted_at=long_ago
        )
        http.get(CALLS_URL, json=page())
        http.post(CALLS_URL, json=call_json(sid="CAnew"), status=201)
        assert call_place.apply(args=[call.pk]).get() == "placed"
        assert CallLog.objects.get(pk=call.pk).external_id == "CAnew" and len(posts(http)) == 1

    def test_a_redelivery_while_the_last_call_may_still_run_waits_for_it_to_end(self, twilio, http):
        call = CallFactory(status="dialing", send_doubt="in_flight", send_attempted_at=timezone.now())
        with pytest.raises(Retry):
            call_place.run(call.pk)
        assert len(http.calls) == 0 and CallLog.objects.get(pk=call.pk).send_doubt == "in_flight"

    def test_a_worker_that_died_before_calling_twilio_leaves_a_call_to_place(self, twilio, http):
        call = CallFactory(status="dialing")  # moved to dialing, died before the create call
        http.post(CALLS_URL, json=call_json(sid="CA7"), status=201)
        assert call_place.apply(args=[call.pk]).get() == "placed"
        assert len(http.calls) == 1 and not gets(http)
        assert CallLog.objects.get(pk=call.pk).external_id == "CA7"

    def test_a_second_run_while_the_create_call_is_in_flight_never_dials(self, twilio, http):
        call = CallFactory()
        seen = []

        def twilio_answers(request):
            # Another worker picks the same call up while this create call is still running.
            with pytest.raises(services.SendInFlight) as err:
                services.call_place_run(call_id=call.pk)
            seen.append(err.value.wait)
            return 201, {}, json.dumps(call_json(sid="CA8"))

        http.add_callback("POST", CALLS_URL, callback=twilio_answers)
        assert services.call_place_run(call_id=call.pk) == "placed"
        assert len(posts(http)) == 1 and not gets(http)
        assert seen and seen[0] > 0

    def test_a_status_callback_that_stamps_the_sid_settles_the_doubt(
        self, twilio, client, eager, django_capture_on_commit_callbacks
    ):
        call = CallFactory(status="dialing", send_doubt="ambiguous", send_attempted_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            response = twilio_post(
                client, f"/webhooks/twilio/call-status/?call={call.pk}", {"CallSid": "CAcb", "CallStatus": "ringing"}
            )
        assert response.status_code == 200
        call.refresh_from_db()
        assert (call.external_id, call.status, call.send_doubt) == ("CAcb", "ringing", "")
