import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from messaging.models import SmsMessage

from .factories import CallFactory, ForwardingRuleFactory, SmsFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "model", ["smsmessage", "calllog", "optout", "businesshours", "forwardingrule", "conversation"]
)
def test_staff_see_every_messaging_changelist(client, staff_user, model):
    SmsFactory(error_code="30003", status="undelivered")
    CallFactory(recording_url="https://api.twilio.com/rec/RE1", recording_sid="RE1", transcript="hello")
    ForwardingRuleFactory()
    client.force_login(staff_user)
    assert client.get(reverse(f"admin:messaging_{model}_changelist")).status_code == 200


def test_a_call_page_links_its_recording_and_shows_the_transcript(client, staff_user):
    call = CallFactory(recording_url="https://api.twilio.com/rec/RE1", recording_sid="RE1", transcript="Call me back")
    client.force_login(staff_user)
    page = client.get(reverse("admin:messaging_calllog_change", args=[call.pk])).content.decode()
    assert 'href="https://api.twilio.com/rec/RE1"' in page and "Call me back" in page


def test_staff_can_queue_a_failed_unsent_message_again(client, staff_user, twilio, django_capture_on_commit_callbacks):
    """failed -> queued is a declared move (SmsMessage.TRANSITIONS), made by services.sms_requeue."""
    failed = SmsFactory(status="failed", error_code="20429")
    delivered = SmsFactory(status="delivered", external_id="SM1")
    failed_at_twilio = SmsFactory(status="failed", external_id="SM2")  # Twilio had it: sending again would repeat it
    client.force_login(staff_user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(
            reverse("admin:messaging_smsmessage_changelist"),
            {"action": "requeue_failed", "_selected_action": [failed.pk, delivered.pk, failed_at_twilio.pk]},
        )
    assert "queued" in SmsMessage.TRANSITIONS["failed"]
    failed.refresh_from_db()
    assert (failed.status, failed.error_code) == ("queued", "")
    assert SmsMessage.objects.get(pk=delivered.pk).status == "delivered"
    assert SmsMessage.objects.get(pk=failed_at_twilio.pk).status == "failed"
    assert len(callbacks) == 1
    # Recent actions say who sent which message again, for that message only.
    assert list(LogEntry.objects.values_list("object_id", "user_id")) == [(str(failed.pk), staff_user.pk)]


@pytest.mark.parametrize("number", ["+1415555０１００", "+1415555٠١٠٠"])
def test_staff_cannot_add_an_opt_out_written_with_another_scripts_digits(client, staff_user, number):
    """The opt-out list is compared with numbers as Twilio sends them (ASCII digits): an entry in fullwidth or
    Arabic-Indic digits would look like an opt-out and match nobody, as the API already refuses such a number."""
    from messaging.models import OptOut

    client.force_login(staff_user)
    response = client.post(reverse("admin:messaging_optout_add"), {"phone_number": number, "active": "on"})
    assert response.status_code == 200 and "Use E.164 format" in response.content.decode()
    assert not OptOut.objects.exists()
    client.post(reverse("admin:messaging_optout_add"), {"phone_number": "+14155550100", "active": "on"})
    assert OptOut.objects.get().phone_number == "+14155550100"


@pytest.mark.parametrize("zone", ["America/Indiana", "Europe", "Mars/Olympus"])
def test_business_hours_in_a_time_zone_that_is_no_zone_are_a_form_error_not_a_500(client, staff_user, zone):
    """A folder of the tz database (America/Indiana) makes ZoneInfo raise IsADirectoryError, not the usual error."""
    import re

    from messaging.models import BusinessHours

    client.force_login(staff_user)
    url = reverse("admin:messaging_businesshours_add")
    page = client.get(url).content.decode()
    data = {"name": "NY office", "time_zone": zone, "is_active": "on"}
    for prefix in re.findall(r'name="([\w-]+)-TOTAL_FORMS"', page):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    response = client.post(url, data)
    assert response.status_code == 200 and "Unknown time zone" in response.content.decode()
    assert not BusinessHours.objects.exists()
