"""#17.7 (issue table row 8): a signed Twilio inbound SMS with a NUL in its Body is recorded, not a 500."""

import pytest

from integrations.models import WebhookEvent
from messaging.models import SmsMessage

from .conftest import HUB_NUMBER, twilio_post

pytestmark = pytest.mark.django_db


def test_a_nul_in_an_inbound_sms_body_is_stripped_and_the_message_recorded(
    twilio, client, django_capture_on_commit_callbacks, eager
):
    params = {"MessageSid": "SMnul1", "SmsSid": "SMnul1", "From": "+15005550006", "To": HUB_NUMBER}
    params.update(Body="see you\x00 at 8", NumSegments="1")
    with django_capture_on_commit_callbacks(execute=True):
        response = twilio_post(client, "/webhooks/twilio/sms/", params)
    assert response.status_code == 200
    assert WebhookEvent.objects.get().payload["Body"] == "see you at 8"
    assert SmsMessage.objects.get(direction="inbound").body == "see you at 8"


@pytest.mark.parametrize("segments", ["-5", "0", "abc", "99999999", "2.5"])
def test_an_inbound_sms_with_an_impossible_segment_count_is_recorded_with_none(
    twilio, client, django_capture_on_commit_callbacks, eager, segments
):
    """The message is the point; a NumSegments no SMS can have is not a reason to retry it until it dies."""
    params = {"MessageSid": "SMseg1", "SmsSid": "SMseg1", "From": "+15005550006", "To": HUB_NUMBER}
    params.update(Body="hello", NumSegments=segments)
    with django_capture_on_commit_callbacks(execute=True):
        response = twilio_post(client, "/webhooks/twilio/sms/", params)
    assert response.status_code == 200
    sms = SmsMessage.objects.get(direction="inbound")
    assert (sms.body, sms.segments) == ("hello", None)
    assert WebhookEvent.objects.get().status == "processed"
