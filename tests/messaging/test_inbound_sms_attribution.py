"""Inbound SMS attribution on a hub number users share: the reply goes to the one user who talks with that
number, and a reply two users could own is left unattributed for staff, never handed to the latest sender."""

import datetime as dt

import pytest
from django.utils import timezone

from messaging.models import Conversation

from .conftest import REPLY_FROM

pytestmark = pytest.mark.django_db

REMOTE = REPLY_FROM
SMS_LIST = "/api/v1/messaging/sms/"


def talked_with(user, number, when):
    return Conversation.objects.create(owner=user, remote_number=number, last_message_at=when)


def listed_bodies(client):
    return [row["body"] for row in client.get(SMS_LIST).json()["results"]]


class TestTwoUsersTalkWithTheSameNumber:
    def test_the_reply_is_given_to_neither_user_and_left_for_staff(self, twilio, reply, user, other_user, client_for):
        earlier = timezone.now() - dt.timedelta(days=3)
        talked_with(user, REMOTE, earlier)
        talked_with(other_user, REMOTE, timezone.now())  # the latest to text that number

        sms = reply("It's Dana, about Tuesday's appointment")

        assert (sms.owner, sms.conversation) == (None, None)
        assert sms.status == "unattributed"
        assert "2 users" in sms.error_message
        # Neither user sees a message that may have been meant for the other.
        assert listed_bodies(client_for(user)) == []
        assert listed_bodies(client_for(other_user)) == []

    def test_the_reply_is_not_counted_as_activity_of_either_conversation(self, twilio, reply, user, other_user):
        when = timezone.now() - dt.timedelta(hours=1)
        talked_with(user, REMOTE, when)
        talked_with(other_user, REMOTE, when)
        reply("hello?")
        assert set(Conversation.objects.values_list("last_message_at", flat=True)) == {when}


class TestOneUserTalksWithTheNumber:
    def test_the_reply_goes_to_that_users_conversation(self, twilio, reply, user, other_user, client_for):
        mine = talked_with(user, REMOTE, timezone.now() - dt.timedelta(days=3))
        talked_with(other_user, "+15005550009", timezone.now())  # another number: no claim on this reply

        sms = reply("See you at 8")

        assert (sms.owner, sms.conversation, sms.status) == (user, mine, "received")
        assert listed_bodies(client_for(user)) == ["See you at 8"]
        assert listed_bodies(client_for(other_user)) == []

    def test_a_number_nobody_talks_with_stays_unowned_as_received(self, twilio, reply, user):
        sms = reply("who is this?")
        assert (sms.owner, sms.conversation, sms.status) == (None, None, "received")
