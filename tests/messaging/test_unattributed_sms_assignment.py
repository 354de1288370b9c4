"""Staff give an unattributed inbound SMS to one of the users who talk with its sender, in admin: only those users
are offered, anyone else is refused, a message already given away cannot be given twice, only staff allowed to
change messages may, and the message then shows in that user's SMS list through the API and in nobody else's."""

import datetime as dt
import re
import threading

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from integrations.audit.models import AuditEvent
from integrations.errors import DomainError
from messaging import services
from messaging.models import Conversation, SmsMessage
from tests.factories import UserFactory

from .conftest import HUB_NUMBER, REPLY_FROM

pytestmark = pytest.mark.django_db

REMOTE = REPLY_FROM
CHANGELIST = reverse("admin:messaging_smsmessage_changelist")
SMS_LIST = "/api/v1/messaging/sms/"
ACTION = "assign_unattributed"


@pytest.fixture
def outsider(db):
    """A user who talks with another number only: no claim on REMOTE's replies."""
    someone = UserFactory()
    Conversation.objects.create(owner=someone, remote_number="+15005550009", last_message_at=timezone.now())
    return someone


@pytest.fixture
def conversations(user, other_user):
    earlier = timezone.now() - dt.timedelta(days=3)
    return {
        user: Conversation.objects.create(owner=user, remote_number=REMOTE, last_message_at=earlier),
        other_user: Conversation.objects.create(owner=other_user, remote_number=REMOTE, last_message_at=earlier),
    }


@pytest.fixture
def unattributed(reply, conversations):
    sms = reply("It's Dana, about Tuesday's appointment")
    assert (sms.status, sms.owner, sms.conversation) == ("unattributed", None, None)
    return sms


def staff_with(*codenames):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="messaging", codename__in=codenames))
    return staff


def choose(client, *sms):
    """Pick the action on the changelist for these messages: the choice page (or a redirect with an error)."""
    return client.post(CHANGELIST, {"action": ACTION, "_selected_action": [m.pk for m in sms]})


def assign(client, owner_id, *sms):
    """Submit the choice page's form as the browser does."""
    data = {"action": ACTION, "_selected_action": [m.pk for m in sms], "apply": "yes", "owner": owner_id}
    return client.post(CHANGELIST, data, follow=True)


def offered(page):
    return {int(pk) for pk in re.findall(r'name="owner" value="(\d+)"', page.content.decode())}


def shown(response):
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def listed_bodies(client):
    return [row["body"] for row in client.get(SMS_LIST).json()["results"]]


def unchanged(sms):
    sms.refresh_from_db()
    return (sms.status, sms.owner_id, sms.conversation_id) == ("unattributed", None, None)


class TestTheChoicePage:
    def test_it_offers_only_the_users_who_talk_with_the_sender(
        self, client, staff_user, unattributed, user, other_user, outsider
    ):
        client.force_login(staff_user)
        page = choose(client, unattributed)
        assert page.status_code == 200
        assert "admin/messaging/smsmessage/assign_unattributed.html" in [t.name for t in page.templates]
        assert offered(page) == {user.pk, other_user.pk}
        assert "Tuesday&#x27;s appointment" in page.content.decode()
        assert unchanged(unattributed)  # choosing is not assigning

    def test_a_message_that_is_not_unattributed_is_not_offered_for_assignment(self, client, staff_user, reply, user):
        Conversation.objects.create(owner=user, remote_number=REMOTE)
        received = reply("only one user talks with me")
        assert received.status == "received"
        client.force_login(staff_user)
        response = client.post(CHANGELIST, {"action": ACTION, "_selected_action": [received.pk]}, follow=True)
        assert offered(response) == set()
        assert any(level == "error" and "Only unattributed" in text for level, text in shown(response))


class TestAssigning:
    def test_the_message_goes_to_the_chosen_user_only(
        self, client, client_for, staff_user, unattributed, user, other_user, outsider, conversations
    ):
        client.force_login(staff_user)
        assert user.pk in offered(choose(client, unattributed))

        response = assign(client, user.pk, unattributed)

        assert ("success", f"1 message(s) assigned to {user}.") in shown(response)
        unattributed.refresh_from_db()
        assert (unattributed.owner, unattributed.conversation, unattributed.status) == (
            user,
            conversations[user],
            "received",
        )
        assert unattributed.error_message == ""  # it said how many users talk with the sender
        # The message is now that conversation's latest activity, as on arrival; the other's is untouched.
        conversations[user].refresh_from_db()
        conversations[other_user].refresh_from_db()
        assert conversations[user].last_message_at == unattributed.created_at
        assert conversations[other_user].last_message_at < unattributed.created_at
        # Through the API: the chosen user sees it, nobody else does.
        assert listed_bodies(client_for(user)) == ["It's Dana, about Tuesday's appointment"]
        assert client_for(user).get(f"{SMS_LIST}{unattributed.pk}/").json()["error_message"] == ""
        assert listed_bodies(client_for(other_user)) == []
        assert listed_bodies(client_for(outsider)) == []
        assert client_for(other_user).get(f"{SMS_LIST}{unattributed.pk}/").status_code == 404

    def test_the_audit_trail_and_history_name_the_staff_member_and_the_user(
        self, client, staff_user, unattributed, user
    ):
        client.force_login(staff_user)
        assign(client, user.pk, unattributed)
        event = AuditEvent.objects.get(action=f"admin.{ACTION}")
        assert (event.actor, event.outcome, event.target_id) == (staff_user, "ok", str(unattributed.pk))
        assert event.details == {"assigned_to": user.pk}
        assert list(LogEntry.objects.values_list("object_id", "user_id")) == [(str(unattributed.pk), staff_user.pk)]

    def test_several_messages_from_the_sender_go_together(self, client, staff_user, reply, conversations, user):
        first, second = reply("one", sid="SMr1"), reply("two", sid="SMr2")
        client.force_login(staff_user)
        assert offered(choose(client, first, second)) == set(u.pk for u in conversations)
        assign(client, user.pk, first, second)
        assert set(SmsMessage.objects.filter(owner=user).values_list("status", flat=True)) == {"received"}
        assert SmsMessage.objects.filter(owner=user).count() == 2

    def test_a_staff_member_with_the_change_permission_may_though_not_a_superuser(self, client, unattributed, user):
        client.force_login(staff_with("view_smsmessage", "change_smsmessage"))
        assign(client, user.pk, unattributed)
        unattributed.refresh_from_db()
        assert (unattributed.owner, unattributed.status) == (user, "received")

    def test_a_stop_on_arrival_still_holds_for_the_number_after_assignment(self, client, staff_user, reply, user):
        """Opt-outs are per number, applied on arrival: assigning neither repeats nor undoes them."""
        Conversation.objects.create(owner=user, remote_number=REMOTE)
        Conversation.objects.create(owner=UserFactory(), remote_number=REMOTE)
        stop = reply("STOP")
        assert services.opted_out(REMOTE)
        client.force_login(staff_user)
        assign(client, user.pk, stop)
        stop.refresh_from_db()
        assert (stop.owner, stop.status) == (user, "received")
        assert services.opted_out(REMOTE)


class TestRefusals:
    def test_a_user_with_no_conversation_with_the_sender_is_refused(
        self, client, client_for, staff_user, unattributed, outsider
    ):
        client.force_login(staff_user)
        response = assign(client, outsider.pk, unattributed)
        assert any(level == "error" and "no conversation with" in text for level, text in shown(response))
        assert unchanged(unattributed)
        assert listed_bodies(client_for(outsider)) == []
        assert not AuditEvent.objects.filter(action=f"admin.{ACTION}", outcome="ok").exists()
        assert not Conversation.objects.filter(owner=outsider, remote_number=REMOTE).exists()

    def test_a_message_another_staff_member_already_assigned_is_not_assigned_again(
        self, client, client_for, staff_user, unattributed, user, other_user
    ):
        first_staff = staff_with("view_smsmessage", "change_smsmessage")
        client.force_login(staff_user)
        assert offered(choose(client, unattributed)) == {user.pk, other_user.pk}  # the page is open...
        client.force_login(first_staff)
        assign(client, other_user.pk, unattributed)  # ...when a colleague gives it away

        client.force_login(staff_user)
        response = assign(client, user.pk, unattributed)  # the page, submitted late

        messages_shown = shown(response)
        assert any(level == "warning" and "not unattributed" in text for level, text in messages_shown)
        assert ("error", "No message was assigned.") in messages_shown
        unattributed.refresh_from_db()
        assert (unattributed.owner, unattributed.status) == (other_user, "received")
        assert listed_bodies(client_for(user)) == []
        assert listed_bodies(client_for(other_user)) == ["It's Dana, about Tuesday's appointment"]
        denied = AuditEvent.objects.get(action=f"admin.{ACTION}", outcome="denied")
        assert (denied.actor, denied.details) == (staff_user, {"error": "sms_not_unattributed", "assigned_to": user.pk})

    def test_a_staff_member_without_the_change_permission_cannot(self, client, unattributed, user):
        viewer = staff_with("view_smsmessage")
        client.force_login(viewer)
        changelist = client.get(CHANGELIST)
        assert changelist.status_code == 200 and f'value="{ACTION}"' not in changelist.content.decode()
        assert offered(choose(client, unattributed)) == set()
        assign(client, user.pk, unattributed)
        assert unchanged(unattributed)
        assert not AuditEvent.objects.filter(action=f"admin.{ACTION}").exists()

    def test_messages_from_different_senders_are_not_assigned_together(
        self, client, staff_user, reply, conversations, user, other_user
    ):
        for owner in (user, other_user):
            Conversation.objects.create(owner=owner, remote_number="+15005550007")
        one, two = reply("one", sid="SMr1"), reply("two", sid="SMr2", sender="+15005550007")
        client.force_login(staff_user)
        response = assign(client, user.pk, one, two)
        assert any(level == "error" and "one sender at a time" in text for level, text in shown(response))
        assert unchanged(one) and unchanged(two)


class TestTheService:
    def test_it_refuses_a_message_that_is_already_received(self, reply, user):
        Conversation.objects.create(owner=user, remote_number=REMOTE)
        received = reply("hi")
        with pytest.raises(DomainError) as refused:
            services.sms_unattributed_assign(sms_id=received.pk, owner=user)
        assert refused.value.code == "sms_not_unattributed"

    def test_it_refuses_a_user_who_does_not_talk_with_the_sender(self, unattributed, outsider):
        with pytest.raises(DomainError) as refused:
            services.sms_unattributed_assign(sms_id=unattributed.pk, owner=outsider)
        assert refused.value.code == "sms_owner_not_a_candidate"
        assert unchanged(unattributed)

    def test_an_older_message_does_not_pull_the_conversations_latest_activity_back(
        self, unattributed, user, conversations
    ):
        later = timezone.now() + dt.timedelta(minutes=5)
        Conversation.objects.filter(pk=conversations[user].pk).update(last_message_at=later)
        services.sms_unattributed_assign(sms_id=unattributed.pk, owner=user)
        conversations[user].refresh_from_db()
        assert conversations[user].last_message_at == later

    def test_received_is_the_only_way_out_of_unattributed(self):
        assert SmsMessage.TRANSITIONS["unattributed"] == {"received"}
        assert SmsMessage.TRANSITIONS["received"] == set()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_staff_members_racing_give_the_message_to_one_user_only(user, other_user):
    """Only a real database shows it: the row lock makes the second assignment see the first."""
    for owner in (user, other_user):
        Conversation.objects.create(owner=owner, remote_number=REMOTE)
    sms = SmsMessage.objects.create(
        direction="inbound", from_number=REMOTE, to_number=HUB_NUMBER, body="whose?", status="unattributed"
    )
    barrier, results = threading.Barrier(2), []

    def give_to(owner):
        try:
            barrier.wait()
            results.append(services.sms_unattributed_assign(sms_id=sms.pk, owner=owner).owner_id)
        except DomainError as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=give_to, args=(owner,)) for owner in (user, other_user)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sms.refresh_from_db()
    assert sms.status == "received" and sms.owner_id in (user.pk, other_user.pk)
    assert sorted(results, key=str) == sorted([sms.owner_id, "sms_not_unattributed"], key=str)
