"""Erasure and the call-log hand-off (integrations.gateway.handoff): a row of the user's that a drainer writes
after the erasure re-pointed the call log (a batch it held while the erasure ran, a job that finished later) or
sets aside in the FAILED list belongs to the pseudonym, never to the erased account; other users' rows are
written once, as ever."""

import json
import re

import pytest
import responses
import time_machine
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone

from integrations import gateway
from integrations.gateway import handoff
from integrations.models import ProviderCall, UsageRollup
from integrations.redis import get_client
from privacy import erasure as erasure_service
from privacy.models import Erasure
from tests.factories import UserFactory
from tests.integrations.factories import ConnectionFactory
from tests.messaging.factories import SmsFactory
from tests.privacy.interleave import commit_held_through_an_erasure

from .conftest import API as TWILIO_API

pytestmark = [pytest.mark.usefixtures("handoff_keys_empty"), pytest.mark.django_db, pytest.mark.redis]

GOOGLE_REVOKE = "https://oauth2.googleapis.com/revoke"


@pytest.fixture
def post(django_capture_on_commit_callbacks):
    def send(client, data):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/api/v1/privacy/erase/", data, format="json")

    return send


def sent(user, operation="send", segments=1):
    with gateway.attempt("acme", operation, owner=user) as att:
        att.record(http_status=200, units={"segments": segments})
    return att


def parked():
    return [json.loads(entry) for entry in get_client().lrange(handoff._keys()["failed"], 0, -1)]


def calls_by_owner():
    owners = {}
    for owner_id in ProviderCall.objects.filter(provider="acme").values_list("owner_id", flat=True):
        owners[owner_id] = owners.get(owner_id, 0) + 1
    return owners


def rollup_calls_by_owner():
    owners = {}
    for owner_id, calls in UsageRollup.objects.filter(provider="acme").values_list("owner_id", "calls"):
        owners[owner_id] = owners.get(owner_id, 0) + calls
    return owners


def pseudonym_of(erasure_id):
    return get_user_model().objects.get(username=Erasure.objects.get(pk=erasure_id).pseudonym)


def test_a_batch_a_drainer_holds_while_the_erasure_runs_is_written_for_the_pseudonym(
    drainer, fake_provider, post, client_for, staff_user, eager
):
    user, other = UserFactory(), UserFactory()
    sent(user)
    sent(other)
    sent(user, segments=3)
    assert len(drainer.take()) == 3  # the drainer holds the batch (alive: no sweep takes it from it) ...

    erasure_id = post(client_for(staff_user), {"user": user.pk, "expedite": True}).json()["id"]
    assert Erasure.objects.get(pk=erasure_id).status == "done"
    assert not get_user_model().objects.filter(pk=user.pk).exists()

    assert drainer.drain_once() == 3  # ... and writes it once the erasure has returned
    pseudonym = pseudonym_of(erasure_id)
    assert calls_by_owner() == {pseudonym.pk: 2, other.pk: 1}
    assert rollup_calls_by_owner() == {pseudonym.pk: 2, other.pk: 1}
    assert parked() == []
    assert drainer.drain_once() == 0  # nothing left in flight or queued: each row written once


def test_a_job_that_finishes_after_the_erasure_hands_off_a_row_of_the_pseudonym(drainer, fake_provider, staff_user):
    user, other = UserFactory(), UserFactory()
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"

    sent(user)  # the user's last job was still calling the provider
    sent(other)
    assert drainer.drain_once() == 2

    pseudonym = pseudonym_of(erasure.pk)
    assert calls_by_owner() == {pseudonym.pk: 1, other.pk: 1}
    assert rollup_calls_by_owner() == {pseudonym.pk: 1, other.pk: 1}
    assert parked() == []


@pytest.mark.postgres  # PostgreSQL refuses a NUL in text, so that row fails alone
def test_rows_of_the_user_set_aside_before_or_after_the_erasure_are_kept_pseudonymised(
    drainer, fake_provider, staff_user
):
    user, other = UserFactory(), UserFactory()
    sent(user, "bad\x00before")
    sent(other, "bad\x00other")
    sent(user, "good.before")
    assert drainer.drain_once() == 3
    assert [(row["operation"], row["owner_id"]) for row in parked()] == [
        ("bad\x00before", user.pk),
        ("bad\x00other", other.pk),
    ]

    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "done"
    pseudonym = pseudonym_of(erasure.pk)
    erasure.refresh_from_db()
    assert erasure.report["apps"]["integrations"]["counts"]["integrations.ProviderCall.set_aside_pseudonymised"] == 1

    sent(user, "bad\x00after")
    sent(user, "good.after")
    assert drainer.drain_once() == 2

    assert [(row["operation"], row["owner_id"]) for row in parked()] == [
        ("bad\x00before", pseudonym.pk),
        ("bad\x00other", other.pk),
        ("bad\x00after", pseudonym.pk),
    ]
    assert all(row["error_message"] == "" for row in parked())
    assert calls_by_owner() == {pseudonym.pk: 2} and rollup_calls_by_owner() == {pseudonym.pk: 2}
    # Put back by staff once the cause is fixed (the README's LMOVE), a row goes to the pseudonym.
    assert handoff.load(get_client().lindex(handoff._keys()["failed"], 0)).owner_id == pseudonym.pk


def test_an_hour_of_usage_written_for_the_pseudonym_before_a_retried_erasure_re_points_the_users(
    drainer, fake_provider, staff_user, http
):
    """Google's revoke is down: the erasure has started but not re-pointed the call log. A row of the user's
    written meanwhile goes to the pseudonym, whose roll-up of that hour the retry adds the user's to."""
    with time_machine.travel(timezone.now().replace(minute=10), tick=True):
        user, other = UserFactory(), UserFactory()
        ConnectionFactory(owner=user)
        http.add(responses.POST, GOOGLE_REVOKE, status=503)
        sent(user, segments=2)
        sent(other)
        assert drainer.drain_once() == 2
        erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user, expedite=True)
        assert erasure_service.erasure_run(erasure_id=erasure.pk) == "retrying"
        pseudonym = pseudonym_of(erasure.pk)

        sent(user)
        assert drainer.drain_once() == 1
        assert calls_by_owner() == {user.pk: 1, pseudonym.pk: 1, other.pk: 1}

        http.replace(responses.POST, GOOGLE_REVOKE, status=200)
        erasure.refresh_from_db()
        assert erasure_service.erasure_run(erasure_id=erasure.pk, now=erasure.next_attempt_at) == "done"

    assert calls_by_owner() == {pseudonym.pk: 2, other.pk: 1}
    rollup = UsageRollup.objects.get(provider="acme", owner=pseudonym)  # one row for the hour: both calls
    assert (rollup.calls, rollup.sms_segments) == (2, 3)
    assert rollup_calls_by_owner() == {pseudonym.pk: 2, other.pk: 1}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the drainer and the erasure each write with a connection of their own
def test_an_erasure_waits_for_a_batch_a_drainer_is_committing_and_pseudonymises_it(
    drainer, fake_provider, monkeypatch, http
):
    user, other, staff = UserFactory(), UserFactory(), UserFactory(is_staff=True)
    # Twilio cannot redact the user's SMS yet: the erasure re-points the call log, then waits to retry, and the
    # account stays until then (so a row of the user's committed after the call log was re-pointed stays theirs).
    SmsFactory(owner=user, status="delivered", external_id="SM" + "7" * 32)
    http.add(responses.POST, re.compile(rf"{re.escape(TWILIO_API)}/Messages/\w+\.json"), status=503)
    sent(user)
    sent(other)
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff)  # its run is started below

    outcome = commit_held_through_an_erasure(monkeypatch, handoff, "calls_record_once", drainer.drain_once, erasure)

    assert outcome == {"write": 2, "erasure": "retrying"}
    erasure.refresh_from_db()
    assert "integrations" in erasure.report["done"] and "messaging" not in erasure.report["done"]
    pseudonym = pseudonym_of(erasure.pk)
    assert calls_by_owner() == {pseudonym.pk: 1, other.pk: 1}
    assert rollup_calls_by_owner() == {pseudonym.pk: 1, other.pk: 1}
    assert parked() == []
    connections.close_all()


def test_the_erasure_is_noticed_once_it_has_started_not_while_it_can_be_cancelled(drainer, fake_provider, staff_user):
    user = UserFactory()
    erasure_service.erase_request(subject=user, requested_by=staff_user)  # the grace period: the user may cancel
    sent(user)
    assert drainer.drain_once() == 1
    assert calls_by_owner() == {user.pk: 1}  # the erasure's run re-points it if it is not cancelled
