"""Inbound calls: TwiML by business hours and forwarding rules; outbound calls through a task."""

import datetime as dt
import xml.etree.ElementTree as ET
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured

from integrations.models import ProviderCall, WebhookEvent
from messaging import business_hours
from messaging.models import BusinessHours, CallLog, Holiday, WeeklyHours

from .conftest import API, CALLS_URL, HUB_NUMBER, call_json, twilio_post
from .factories import CallFactory, ForwardingRuleFactory

pytestmark = pytest.mark.django_db

NY = "America/New_York"
# Wednesday 2026-12-23 and Friday 2026-12-25 (a holiday), in New York time.
WED_NOON = dt.datetime(2026, 12, 23, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
WED_NIGHT = dt.datetime(2026, 12, 23, 21, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
CHRISTMAS_NOON = dt.datetime(2026, 12, 25, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


@pytest.fixture
def office(db):
    hours = BusinessHours.objects.create(name="NY office", time_zone=NY)
    for day in range(5):
        WeeklyHours.objects.create(schedule=hours, weekday=day, opens=dt.time(9), closes=dt.time(17))
    Holiday.objects.create(schedule=hours, date=dt.date(2026, 12, 25), name="Christmas")
    return hours


@pytest.fixture
def call_in(client, django_capture_on_commit_callbacks, eager):
    def deliver(path="/webhooks/twilio/voice/", at=WED_NOON, **params):
        params = {"CallSid": "CA100", "From": "+15005550006", "To": HUB_NUMBER, "CallStatus": "ringing", **params}
        with time_machine.travel(at, tick=False), django_capture_on_commit_callbacks(execute=True):
            response = twilio_post(client, path, params)
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/xml")
        return ET.fromstring(response.content)

    return deliver


def dial_action_query(root):
    return {k: v[0] for k, v in parse_qs(root.find("Dial").get("action").split("?", 1)[1]).items()}


class TestInboundTwiml:
    def test_in_hours_the_call_is_forwarded_by_the_matching_rule(self, twilio, office, call_in):
        rule = ForwardingRuleFactory(target_number="+14155550111", ring_timeout=25)
        root = call_in()
        dial = root.find("Dial")
        assert dial.find("Number").text == "+14155550111" and dial.get("timeout") == "25"
        assert dial.get("action").startswith("https://hub.example.com/webhooks/twilio/voice/dial-status/?")
        assert dial_action_query(root) == {"rule": str(rule.pk), "stage": "primary"}
        call = CallLog.objects.get(external_id="CA100")
        assert (call.direction, call.routing, call.forwarded_to, call.forwarding_rule) == (
            "inbound",
            "forward",
            "+14155550111",
            rule,
        )
        assert WebhookEvent.objects.get(event_id="voice.inbound:CA100").status == "processed"

    def test_after_hours_the_caller_gets_voicemail_with_transcription(self, twilio, office, call_in):
        ForwardingRuleFactory()
        root = call_in(at=WED_NIGHT)
        assert root.find("Dial") is None
        record = root.find("Record")
        assert record.get("transcribe") == "true"
        assert record.get("transcribeCallback") == "https://hub.example.com/webhooks/twilio/voice/transcription/"
        assert record.get("recordingStatusCallback") == "https://hub.example.com/webhooks/twilio/voice/recording/"
        assert "leave a message" in root.find("Say").text
        call = CallLog.objects.get()
        assert (call.routing, call.voicemail) == ("after_hours", True)

    def test_on_a_holiday_the_caller_gets_voicemail(self, twilio, office, call_in):
        ForwardingRuleFactory()
        root = call_in(at=CHRISTMAS_NOON)
        assert root.find("Record") is not None and root.find("Dial") is None
        assert CallLog.objects.get().routing == "holiday"

    def test_no_answer_tries_the_fallback_number_then_voicemail(self, twilio, office, call_in):
        rule = ForwardingRuleFactory(target_number="+14155550111", fallback_number="+14155550122")
        call_in()
        query = f"?rule={rule.pk}&stage=primary"
        root = call_in(
            path=f"/webhooks/twilio/voice/dial-status/{query}", DialCallStatus="no-answer", CallStatus="in-progress"
        )
        assert root.find("Dial/Number").text == "+14155550122"
        assert dial_action_query(root)["stage"] == "fallback"
        root = call_in(
            path=f"/webhooks/twilio/voice/dial-status/?rule={rule.pk}&stage=fallback",
            DialCallStatus="busy",
            CallStatus="in-progress",
        )
        assert root.find("Record") is not None
        call = CallLog.objects.get()
        assert (call.routing, call.voicemail) == ("no_answer", True)

    def test_no_answer_without_a_fallback_goes_to_voicemail(self, twilio, office, call_in):
        rule = ForwardingRuleFactory()
        call_in()
        root = call_in(
            path=f"/webhooks/twilio/voice/dial-status/?rule={rule.pk}&stage=primary", DialCallStatus="no-answer"
        )
        assert root.find("Record") is not None

    def test_an_answered_forward_just_hangs_up_afterwards(self, twilio, office, call_in):
        rule = ForwardingRuleFactory(fallback_number="+14155550122")
        call_in()
        root = call_in(
            path=f"/webhooks/twilio/voice/dial-status/?rule={rule.pk}&stage=primary", DialCallStatus="completed"
        )
        assert root.find("Hangup") is not None and root.find("Dial") is None

    def test_rules_match_by_caller_prefix_and_time_window_in_priority_order(self, twilio, office, call_in):
        ForwardingRuleFactory(priority=1, caller_prefix="+44", target_number="+442079460000")
        ForwardingRuleFactory(priority=2, start_time=dt.time(13), end_time=dt.time(17), target_number="+14155550133")
        ForwardingRuleFactory(priority=3, target_number="+14155550144")
        assert call_in(From="+447700900123", CallSid="CA1").find("Dial/Number").text == "+442079460000"
        assert call_in(CallSid="CA2").find("Dial/Number").text == "+14155550144"  # noon: the afternoon rule is not on
        afternoon = WED_NOON + dt.timedelta(hours=2)
        assert call_in(CallSid="CA3", at=afternoon).find("Dial/Number").text == "+14155550133"

    def test_in_hours_with_no_rule_the_caller_gets_voicemail(self, twilio, office, call_in):
        assert call_in().find("Record") is not None
        assert CallLog.objects.get().routing == "no_rule"

    def test_a_voice_webhook_with_a_bad_signature_gets_403_and_no_twiml(self, twilio, client):
        response = twilio_post(client, "/webhooks/twilio/voice/", {"CallSid": "CA9"}, token="wrong")
        assert response.status_code == 403 and not CallLog.objects.exists()


class TestSchedule:
    def test_hours_come_from_settings_when_no_schedule_is_active(self, settings):
        settings.TWILIO_BUSINESS_TIME_ZONE = "Europe/Paris"
        settings.TWILIO_BUSINESS_HOURS = "mon-fri 09:00-18:00; sat 10:00-12:00"
        settings.TWILIO_BUSINESS_HOLIDAYS = ["2026-12-25"]
        schedule = business_hours.schedule_current()
        at = lambda *a: dt.datetime(*a, tzinfo=dt.UTC)  # noqa: E731
        assert business_hours.status_at(schedule, at(2026, 12, 23, 16, 30)) == "open"  # 17:30 in Paris
        assert business_hours.status_at(schedule, at(2026, 12, 23, 17, 30)) == "after_hours"
        assert business_hours.status_at(schedule, at(2026, 12, 26, 10, 0)) == "open"  # Saturday 11:00
        assert business_hours.status_at(schedule, at(2026, 12, 25, 10, 0)) == "holiday"

    def test_an_overnight_window_runs_past_midnight(self, db):
        schedule = business_hours.Schedule(tz=dt.UTC, weekly=business_hours.parse_weekly("fri 22:00-06:00"))
        assert business_hours.status_at(schedule, dt.datetime(2026, 12, 18, 23, tzinfo=dt.UTC)) == "open"
        assert business_hours.status_at(schedule, dt.datetime(2026, 12, 19, 5, tzinfo=dt.UTC)) == "open"
        assert business_hours.status_at(schedule, dt.datetime(2026, 12, 19, 7, tzinfo=dt.UTC)) == "after_hours"

    @pytest.mark.parametrize("spec", ["weekdays 9-5", "mon 09:00", "mon-fri 25:00-26:00", "xyz 09:00-17:00"])
    def test_a_malformed_hours_setting_names_the_variable(self, spec):
        with pytest.raises(ImproperlyConfigured, match="TWILIO_BUSINESS_HOURS"):
            business_hours.parse_weekly(spec)


class TestOutboundCalls:
    URL = "/api/v1/messaging/calls/"

    def test_a_call_is_placed_by_a_task_with_status_callbacks(
        self, twilio, http, eager, user_client, django_capture_on_commit_callbacks
    ):
        http.post(CALLS_URL, json=call_json(sid="CA7"), status=201)
        with django_capture_on_commit_callbacks(execute=True):
            response = user_client.post(
                self.URL, {"to": "+15005550006", "say": "Your order shipped.", "record": True}, format="json"
            )
        assert response.status_code == 202, response.content
        call = CallLog.objects.get()
        assert (call.external_id, call.status, call.direction) == ("CA7", "dialing", "outbound")
        sent = parse_qs(http.calls[0].request.body)
        assert sent["To"] == ["+15005550006"] and sent["From"] == [HUB_NUMBER]
        assert "<Say>Your order shipped.</Say>" in sent["Twiml"][0]
        assert sent["StatusCallback"] == [f"https://hub.example.com/webhooks/twilio/call-status/?call={call.pk}"]
        assert sent["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
        assert sent["Record"] == ["true"]
        assert ProviderCall.objects.get().operation == "call.create"

    def test_a_completed_call_books_its_minutes_and_billed_price(
        self, twilio, http, eager, client, django_capture_on_commit_callbacks
    ):
        call = CallFactory(external_id="CA8", status="dialing")
        http.get(
            f"{API}/Calls/CA8.json", json=call_json(sid="CA8", status="completed", duration="125", price="-0.04200")
        )
        with django_capture_on_commit_callbacks(execute=True):
            twilio_post(
                client,
                "/webhooks/twilio/call-status/",
                {"CallSid": "CA8", "CallStatus": "completed", "CallDuration": "125"},
            )
        call.refresh_from_db()
        assert (call.status, call.duration_seconds, call.price_usd, call.price_final) == (
            "completed",
            125,
            Decimal("0.042"),
            True,
        )
        booked = ProviderCall.objects.get(operation="call.price")
        assert booked.units == {"minutes": 3} and booked.cost_usd == Decimal("0.042")

    def test_a_call_to_an_invalid_number_is_refused(self, twilio, user_client):
        response = user_client.post(self.URL, {"to": "555-0100", "say": "hi"}, format="json")
        assert response.status_code == 400 and "to" in response.json()["fields"]

    def test_a_call_to_the_hubs_own_number_is_refused(self, twilio, http, user_client):
        response = user_client.post(self.URL, {"to": HUB_NUMBER, "say": "hi"}, format="json")
        assert response.status_code == 400, response.content
        assert "own number" in response.json()["fields"]["to"][0]
        assert not CallLog.objects.exists() and not http.calls

    @pytest.mark.parametrize("say", ["Line one\x0bLine two", "Alert \x1b[31m now", "&" * 800])
    def test_what_twiml_cannot_carry_is_refused_before_a_call_is_queued(self, twilio, http, user_client, say):
        # Control characters make the TwiML malformed XML; 800 "&" are 800 "&amp;", over Twilio's 4000 characters.
        response = user_client.post(self.URL, {"to": "+15005550006", "say": say}, format="json")
        assert response.status_code == 400, response.content
        assert "say" in response.json()["fields"]
        assert not CallLog.objects.exists() and not http.calls

    def test_another_users_call_is_not_found(self, twilio, user_client, other_user):
        theirs = CallFactory(owner=other_user)
        assert user_client.get(f"{self.URL}{theirs.pk}/").status_code == 404
        assert user_client.get(self.URL).json()["results"] == []

    def test_a_redelivered_call_task_after_a_worker_died_mid_call_never_dials_twice(self, twilio, http):
        from django.utils import timezone

        from messaging.tasks import call_place

        # The row a dead worker left behind: it had started the create call a while ago.
        started = timezone.now() - dt.timedelta(minutes=5)
        call = CallFactory(status="dialing", send_doubt="in_flight", send_started_at=started, send_attempted_at=started)
        created = started.strftime("%a, %d %b %Y %H:%M:%S +0000")
        listed = call_json(sid="CAdead", direction="outbound-api", date_created=created)
        http.get(CALLS_URL, json={"calls": [listed], "uri": "/x"})
        assert call_place.apply(args=[call.pk]).get() == "found"
        assert [c.request.method for c in http.calls] == ["GET"]  # looked up, never dialed again
        assert CallLog.objects.get(pk=call.pk).external_id == "CAdead"
        assert call_place.acks_late and call_place.reject_on_worker_lost


def test_a_repeated_voice_webhook_answers_again_and_logs_one_call(twilio, office, call_in):
    ForwardingRuleFactory(target_number="+14155550111")
    assert call_in().find("Dial/Number").text == "+14155550111"
    assert call_in().find("Dial/Number").text == "+14155550111"
    assert CallLog.objects.count() == 1 and WebhookEvent.objects.count() == 1


def _after_the_message(root, current_path):
    """Where Twilio goes once the caller has left a message: the <Record>'s action, else the current document."""
    action = root.find("Record").get("action")
    return action.removeprefix("https://hub.example.com") if action else current_path


@pytest.mark.parametrize("route", ["after_hours", "no_answer"])
def test_once_the_message_is_left_the_call_ends_instead_of_playing_voicemail_again(twilio, office, call_in, route):
    # Twilio requests <Record>'s action when the recording ends (the current document's URL without one) and ignores
    # the verbs after it: the caller heard the greeting and the beep again, and left a second, third... message.
    if route == "after_hours":
        ForwardingRuleFactory()
        path, at, extra = "/webhooks/twilio/voice/", WED_NIGHT, {}
    else:
        rule = ForwardingRuleFactory(fallback_number="+14155550122")
        call_in()
        path, at = f"/webhooks/twilio/voice/dial-status/?rule={rule.pk}&stage=fallback", WED_NOON
        extra = {"DialCallStatus": "no-answer", "CallStatus": "in-progress"}
    root = call_in(path=path, at=at, **extra)
    assert root.find("Record") is not None
    recorded = {"CallStatus": "in-progress", "RecordingUrl": "https://api.twilio.com/2010-04-01/Recordings/RE1"}
    after = call_in(path=_after_the_message(root, path), at=at, RecordingSid="RE1", RecordingDuration="7", **recorded)
    assert [child.tag for child in after] == ["Hangup"]
    assert CallLog.objects.count() == 1
