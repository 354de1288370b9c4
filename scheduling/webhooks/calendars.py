"""Calendar push: Google Calendar channels and Microsoft Graph subscriptions on calendar events.

Both only say "something changed in this calendar". Handlers mark the calendar
due and queue its incremental sync (scheduling.calendars.sync), which reads the
provider's own change log from the stored cursor: duplicates, replays and
notifications out of order cost a cheap request and change nothing. Handlers
only queue: the inbox runs them inside its batch transaction, and provider
calls belong outside it.

Google (POST /webhooks/google-calendar/): the notification has no body; the
headers say which channel (X-Goog-Channel-ID), its token
(X-Goog-Channel-Token, which the hub set to HMAC(GOOGLE_CALENDAR_CHANNEL_SECRET,
channel id) when it opened the channel), the resource (X-Goog-Resource-ID, the
one Google answered at watch time), the state (`sync` when the channel opens,
`exists` / `not_exists` on changes) and a message number, increasing per
channel: the channel id and the number identify a delivery, so a retry is
stored once. An unknown channel (closed here, still open at Google until it
lapses) is refused with 403; Google does not retry a 4xx.

Graph (POST /webhooks/outlook-calendar/): integrations.webhooks.graph's shared
checks with each calendar's subscription clientState; lifecycle notifications
renew (reauthorizationRequired), re-create (subscriptionRemoved) or resync
(missed).
"""

from django.views.decorators.csrf import csrf_exempt

from integrations.task_base import enqueue_on_commit
from integrations.webhooks import (
    InboundEvent,
    WebhookRejected,
    WebhookVerifier,
    receive_webhook,
    safe_headers,
    signatures_match,
    webhook_handler,
)
from integrations.webhooks.graph import (
    GraphNotificationVerifier,
    GraphSubscriptionRef,
    change_types,
    graph_webhook_view,
)

from ..models import Calendar

GOOGLE_STATES = ("sync", "exists", "not_exists")
KEPT = [
    "Content-Type",
    "User-Agent",
    "X-Goog-Channel-ID",
    "X-Goog-Channel-Expiration",
    "X-Goog-Resource-ID",
    "X-Goog-Resource-State",
    "X-Goog-Resource-URI",
    "X-Goog-Message-Number",
]


class GoogleCalendarVerifier(WebhookVerifier):
    provider = "google_calendar"
    secret_setting = "GOOGLE_CALENDAR_CHANNEL_SECRET"
    signature_header = "X-Goog-Channel-Token"
    # Google sends an empty body labelled "application/json; utf-8".
    content_types = ("application/json",)

    def bad_signature_detail(self):
        return "The X-Goog-Channel-Token is not the token the hub gave this channel (X-Goog-Channel-ID)."

    def signature_matches(self, request, signature, secret):
        from ..calendars.sync import channel_token

        channel_id = request.headers.get("X-Goog-Channel-ID", "")
        return bool(channel_id) and signatures_match(channel_token(channel_id, secret), signature)

    def parse(self, request):
        channel_id = request.headers.get("X-Goog-Channel-ID", "")
        state = request.headers.get("X-Goog-Resource-State", "")
        number = request.headers.get("X-Goog-Message-Number", "")
        resource_id = request.headers.get("X-Goog-Resource-ID", "")
        # isascii too: "²" or "①" are digits to str.isdigit() but no number to int(), which also refuses more
        # than 4300 digits (Google's numbers are 64-bit: 20 digits at most).
        if (
            state not in GOOGLE_STATES
            or not (number.isascii() and number.isdigit() and len(number) <= 20)
            or not resource_id
            or len(channel_id) > 64
        ):
            raise WebhookRejected(
                400,
                "malformed_event",
                "A channel notification needs X-Goog-Resource-State (sync/exists/not_exists), "
                "X-Goog-Message-Number and X-Goog-Resource-ID.",
            )
        calendar = (
            Calendar.objects.filter(channel_id=channel_id, kind=Calendar.Kind.GOOGLE)
            .only("pk", "channel_resource_id")
            .first()
        )
        # A channel stored without its resource id matches no delivery (it is renewed by the next beat).
        if calendar is None or calendar.channel_resource_id != resource_id:
            raise WebhookRejected(403, "unknown_channel", "This channel is not open at the hub (closed or renewed).")
        return InboundEvent(
            event_id=f"{channel_id}:{number}",
            type=f"google_calendar.{state}",
            payload={
                "calendar_id": calendar.pk,
                "channel_id": channel_id,
                "resource_state": state,
                "message_number": int(number),
            },
            headers=safe_headers(request, KEPT),
        )


verify_google_calendar = GoogleCalendarVerifier()


@csrf_exempt  # Google cannot send a CSRF token; the channel token authenticates the notification
def google_calendar_webhook(request):
    return receive_webhook(request, provider="google_calendar", verify=verify_google_calendar)


@webhook_handler("google_calendar", "google_calendar.exists", "google_calendar.not_exists")
def on_google_calendar_change(event):
    from ..calendars.sync import calendar_mark_due

    calendar_mark_due(calendar_ids=[event.payload["calendar_id"]])


@webhook_handler("google_calendar", "google_calendar.sync")
def on_google_channel_open(event):
    """The first message of a channel: nothing changed yet (the watch call already synced)."""


class OutlookCalendarVerifier(GraphNotificationVerifier):
    """Notifications of calendar subscriptions (Calendar.subscription_id), checked against Calendar.client_state."""

    provider = "outlook_calendar"

    def lookup(self, subscription_id):
        calendar = (
            Calendar.objects.filter(subscription_id=subscription_id, kind=Calendar.Kind.MICROSOFT)
            .only("client_state", "pk")
            .first()
        )
        if calendar is None:
            return None
        return GraphSubscriptionRef([calendar.client_state], {"calendar_id": calendar.pk})


verify_outlook_calendar = OutlookCalendarVerifier()
outlook_calendar_webhook = graph_webhook_view(verify_outlook_calendar)


@webhook_handler("outlook_calendar", *change_types("outlook_calendar"), "outlook_calendar.missed")
def on_outlook_calendar_change(event):
    from ..calendars.sync import calendar_mark_due

    calendar_mark_due(calendar_ids=[event.payload["calendar_id"]])


@webhook_handler("outlook_calendar", "outlook_calendar.reauthorizationRequired", "outlook_calendar.subscriptionRemoved")
def on_outlook_calendar_lifecycle(event):
    """Graph wants the subscription renewed (or removed it): renew or re-create it, then catch up."""
    from ..calendars.sync import calendar_mark_due
    from ..tasks import calendar_watch_task

    enqueue_on_commit(calendar_watch_task, event.payload["calendar_id"])
    calendar_mark_due(calendar_ids=[event.payload["calendar_id"]])
