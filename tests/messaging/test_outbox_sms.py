"""No SMS stalls or is lost (issue 17 point 5): a broker error after commit, a worker killed
mid-send and a lost message each delay the message by at most the sweep interval, and
Twilio never gets it twice."""

import datetime as dt
import json
import os

import pytest
import redis
import time_machine
from django.utils import timezone

from integrations import outbox
from messaging.models import SendDoubt, SmsMessage
from tests.integrations.outbox_kit import broker_at, broker_down, make_overdue, next_attempt, sweep

from .conftest import MESSAGES_URL, message_json
from .factories import SmsFactory
from .test_send_lookup import BODY, TO, listed, page, posts

pytestmark = pytest.mark.django_db

URL = "/api/v1/messaging/sms/"
SENT = {"messaging.sms_send": 1}


def create(client, capture):
    with capture(execute=True):
        response = client.post(URL, {"to": TO, "body": BODY}, format="json")
    assert response.status_code == 202, response.content
    return SmsMessage.objects.get(pk=response.json()["id"])


class TestBrokerErrorAfterCommit:
    def test_the_client_gets_202_with_the_row_and_the_sweeper_sends_it(
        self, twilio, http, user_client, django_capture_on_commit_callbacks
    ):
        http.post(MESSAGES_URL, json=message_json(sid="SMafter"), status=201)
        with broker_down():
            sms = create(user_client, django_capture_on_commit_callbacks)
        assert sms.status == "queued" and posts(http) == []
        assert next_attempt(sms) <= timezone.now()  # due at once: the next sweep, not the grace
        assert sweep()["sent"] == SENT
        sms.refresh_from_db()
        assert (sms.status, sms.external_id, sms.next_attempt_at, sms.outbox_sweeps) == ("sending", "SMafter", None, 0)
        assert len(posts(http)) == 1
        assert sweep()["sent"] == {}


class TestLostMessage:
    @pytest.mark.redis
    def test_a_message_lost_in_redis_is_sent_by_the_sweeper_after_the_grace(
        self, twilio, http, user_client, django_capture_on_commit_callbacks, settings
    ):
        broker = redis.Redis.from_url(os.environ["REDIS_URL"])
        broker.delete("messaging")
        http.post(MESSAGES_URL, json=message_json(sid="SMlost1"), status=201)
        with broker_at(os.environ["REDIS_URL"]):
            sms = create(user_client, django_capture_on_commit_callbacks)
            assert broker.llen("messaging") == 1  # queued in the real Redis...
        broker.delete("messaging")  # ...and lost there (a restart without persistence)
        assert sweep()["sent"] == {}  # within the grace it may still be on its way
        with time_machine.travel(timezone.now() + dt.timedelta(seconds=settings.OUTBOX_GRACE_SECONDS + 1)):
            assert sweep()["sent"] == SENT
        sms.refresh_from_db()
        assert (sms.status, sms.external_id, sms.next_attempt_at) == ("sending", "SMlost1", None)
        assert len(posts(http)) == 1

    def test_a_message_that_arrives_after_the_sweep_sends_nothing_twice(self, twilio, http, user_client, eager):
        sms = SmsFactory(status="queued")
        make_overdue(sms)
        http.post(MESSAGES_URL, json=message_json(sid="SMslow"), status=201)
        assert sweep()["sent"] == SENT
        # The slow original message is delivered at last: the row is no longer due.
        from messaging.tasks import sms_send

        assert sms_send.apply(args=(sms.pk,)).get() == "skipped"
        assert len(posts(http)) == 1


class TestWorkerKilledMidRun:
    def test_a_send_cut_off_mid_call_is_found_on_twilio_not_sent_again(self, twilio, http):
        ten_minutes_ago = timezone.now() - dt.timedelta(minutes=10)
        sms = SmsFactory(
            status="sending",
            send_doubt=SendDoubt.IN_FLIGHT,
            send_started_at=ten_minutes_ago,
            send_attempted_at=ten_minutes_ago,
        )
        make_overdue(sms)  # the dead run's lease ran out
        http.get(MESSAGES_URL, json=page(listed("SMdelivered", created=ten_minutes_ago)))
        http.post(MESSAGES_URL, json=message_json(sid="SMtwice"), status=201)
        assert sweep()["sent"] == SENT
        sms.refresh_from_db()
        assert sms.external_id == "SMdelivered" and sms.next_attempt_at is None
        assert posts(http) == []

    def test_a_run_killed_before_its_create_call_sends_once(self, twilio, http):
        sms = SmsFactory(status="sending")  # moved to sending, died before the create call was claimed
        make_overdue(sms)
        http.post(MESSAGES_URL, json=message_json(sid="SMonce"), status=201)
        assert sweep()["sent"] == SENT
        sms.refresh_from_db()
        assert (sms.external_id, sms.next_attempt_at) == ("SMonce", None)
        assert len(posts(http)) == 1

    def test_a_running_send_holds_a_lease(self, twilio, http, settings):
        sms = SmsFactory(status="queued")
        seen = []

        def twilio_answers(request):
            seen.append(next_attempt(sms))
            return 201, {}, json.dumps(message_json(sid="SMlease"))

        http.add_callback("POST", MESSAGES_URL, callback=twilio_answers)
        before = timezone.now()
        sweep_kind = outbox.kind_for("messaging.sms_send")
        from messaging.tasks import sms_send

        sms_send.apply(args=(sms.pk,))
        lease = settings.OUTBOX_LEASE_SECONDS  # renewed while a worker's run lives (TestLeases)
        assert sweep_kind.lease_seconds() == lease
        assert seen and seen[0] >= before + dt.timedelta(seconds=lease - 1)
        assert next_attempt(sms) is None  # done: out of the outbox


class TestLeavingTheOutbox:
    def test_a_refused_message_fails_and_is_never_swept(
        self, twilio, http, eager, user_client, django_capture_on_commit_callbacks
    ):
        http.post(MESSAGES_URL, json={"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}, status=400)
        sms = create(user_client, django_capture_on_commit_callbacks)
        sms.refresh_from_db()
        assert (sms.status, sms.next_attempt_at) == ("failed", None)
        assert sweep()["sent"] == {}

    def test_an_inbound_message_is_not_in_the_outbox(self, twilio, http):
        sms = SmsFactory(direction="inbound", status="received", external_id="SMin")
        make_overdue(sms)
        result = sweep()
        assert result["sent"] == {} and result["cleared"] == 1
        assert next_attempt(sms) is None
