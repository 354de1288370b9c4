"""Calendar push verifiers held to the shared webhook contract (tests/contracts/webhooks.py)."""

import pytest

from integrations.models import WebhookEvent
from scheduling.calendars.sync import channel_token
from scheduling.models import Calendar
from tests.contracts.webhooks import NEW_SECRET, GraphNotificationContract, WebhookContract

from ..integrations.factories import ConnectionFactory


def _calendar(kind, **fields):
    provider = "google_oauth" if kind == "google" else "microsoft_oauth"
    conn = ConnectionFactory(provider=provider, capabilities=["calendar"])
    n = Calendar.objects.count()
    return Calendar.objects.create(owner=conn.owner, connection=conn, kind=kind, external_id=f"cal-{n}", **fields)


class TestGoogleCalendarWebhookContract(WebhookContract):
    url = "/webhooks/google-calendar/"
    secret_setting = "GOOGLE_CALENDAR_CHANNEL_SECRET"
    json_body = False

    @pytest.fixture(autouse=True)
    def _channel(self, _configured):
        self.calendar = _calendar("google", channel_id="chan-0123456789", channel_resource_id="res-1")

    def event(self, n):
        return {"state": "exists", "number": n}

    def malformed(self):
        return {"state": "teleported", "number": 1}

    # Digits to str.isdigit() but no number to int(); and more digits than int() reads.
    @pytest.mark.parametrize("number", ["\u00b2", "\u2460", "1\u00b3", "9" * 5000])
    def test_a_message_number_that_is_no_decimal_number_is_400(self, client, number):
        response = self.post(client, {"state": "exists", "number": number}, secret=NEW_SECRET)
        assert response.status_code == 400 and response.json()["error"] == "malformed_event"
        assert not WebhookEvent.objects.exists()

    def post(self, client, body, *, secret, timestamp=None, signature=None, content_type=None):
        token = channel_token(self.calendar.channel_id, secret) if signature is None else signature
        headers = {
            "HTTP_X_GOOG_CHANNEL_ID": self.calendar.channel_id,
            "HTTP_X_GOOG_RESOURCE_ID": "res-1",
            "HTTP_X_GOOG_RESOURCE_STATE": body["state"],
            "HTTP_X_GOOG_MESSAGE_NUMBER": str(body["number"]),
            "HTTP_X_GOOG_RESOURCE_URI": "https://www.googleapis.com/calendar/v3/calendars/x/events",
        }
        if token:
            headers["HTTP_X_GOOG_CHANNEL_TOKEN"] = token
        # Google's notification has no body; the size check still holds (WEBHOOK_MAX_BYTES of 64 < this padding).
        raw = b"" if self.settings.WEBHOOK_MAX_BYTES > 64 else b" " * 100
        # Django's test client drops the content type of an empty body unless it is set as a header.
        kind = content_type or "application/json; utf-8"
        return client.post(self.url, raw, content_type=kind, CONTENT_TYPE=kind, **headers)


class TestOutlookCalendarWebhookContract(GraphNotificationContract):
    url = "/webhooks/outlook-calendar/"
    event_type_prefix = "outlook_calendar"

    def subscribe(self, client_state):
        n = Calendar.objects.count()
        return _calendar("microsoft", subscription_id=f"sub-cal-{n}", client_state=client_state).subscription_id

    def event(self, n, *, subscription_id=None):
        item = super().event(n, subscription_id=subscription_id)
        item["resource"] = f"Users/u-1/Events/AAMkEv{n}"
        item["resourceData"] = {
            "@odata.type": "#Microsoft.Graph.Event",
            "@odata.etag": f'W/"DwAAAB{n}"',
            "id": f"AAMkEv{n}",
        }
        return item
