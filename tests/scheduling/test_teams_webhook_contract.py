"""The Teams meeting notification URL held to the shared Graph webhook contract (tests/contracts/webhooks.py)."""

from scheduling.models import MeetingSubscription
from tests.contracts.webhooks import GraphNotificationContract

from .factories import MeetingFactory


class TestTeamsWebhookContract(GraphNotificationContract):
    url = "/webhooks/teams/"
    event_type_prefix = "teams"

    def subscribe(self, client_state):
        meeting = MeetingFactory(provider="teams", external_uuid="MSo1N2Y5")
        return MeetingSubscription.objects.create(
            meeting=meeting,
            provider="teams",
            kind="graph_recordings",
            external_id=f"sub-rec-{meeting.pk}",
            client_state=client_state,
        ).external_id

    def event(self, n, *, subscription_id=None):
        item = super().event(n, subscription_id=subscription_id)
        rid = f"VjIjIz{n}"
        item["resource"] = f"communications/onlineMeetings('MSo1N2Y5')/recordings('{rid}')"
        item["resourceData"] = {"@odata.type": "#Microsoft.Graph.callRecording", "id": rid}
        return item
