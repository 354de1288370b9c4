"""Every scheduling provider's calls follow the egress rule (integrations.egress): with a proxy named by the
environment they go through it, with their host in NO_PROXY they go direct. Each test runs both ways
(`egress_route`), against the provider's fake on a real socket, through the hub's API or the provider adapter."""

import pytest
from django.contrib.auth.models import Group

from scheduling.calendars.graph import events as graph_events
from scheduling.providers import google_meet
from tests.factories import UserFactory

from .calendar_fakes import FakeGraphCalendar
from .conftest import _connection
from .drive_fake import MP4, FakeDrive
from .fakes import FakeGraph, FakeWebex
from .freebusy_fake import FakeFreeBusy
from .helpers import URL, body
from .test_availability_api import MONDAY, calendar
from .zoom_fake import FakeZoom

pytestmark = pytest.mark.django_db
FAST = {"requests": {"rate": 1000, "burst": 1000}}


def _limits(settings, *providers):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, **dict.fromkeys(providers, FAST)}


def _microsoft(settings, served, fake):
    settings.MICROSOFT_CLIENT_ID, settings.MICROSOFT_CLIENT_SECRET = "ms-client-id", "ms-client-secret"
    settings.APP_URL = "https://hub.example.com"
    graph = served(fake, "https://graph.microsoft.test")
    settings.GRAPH_API_BASE = graph.base + "/v1.0"
    return graph


def test_graph_calendar(settings, served, user, egress_route):
    fake = FakeGraphCalendar()
    graph = _microsoft(settings, served, fake)
    _limits(settings, "microsoft_calendar")
    conn = _connection(
        user, "microsoft_oauth", "grace@contoso.com", fake.token, ["Calendars.ReadWrite"], capabilities=("calendar",)
    )

    assert graph_events.calendars_list(conn)

    egress_route.check(graph.base)


def test_teams(settings, served, user, user_client, egress_route):
    fake = FakeGraph()
    graph = _microsoft(settings, served, fake)
    _limits(settings, "teams")
    _connection(
        user,
        "microsoft_oauth",
        "grace@contoso.com",
        fake.token,
        ["OnlineMeetings.ReadWrite", "Calendars.ReadWrite", "User.Read"],
    )

    response = user_client.post(URL, body("teams"), format="json")

    assert response.status_code == 201, response.json()
    egress_route.check(graph.base)


def test_webex(settings, served, user, user_client, egress_route):
    from scheduling.oauth_providers import WEBEX_MEETINGS

    fake = FakeWebex()
    webex = served(fake, "https://webexapis.test")
    settings.WEBEX_CLIENT_ID, settings.WEBEX_CLIENT_SECRET = "webex-client-id", "webex-client-secret"
    settings.WEBEX_API_BASE, settings.WEBEX_WEBHOOK_SECRET = webex.base + "/v1", "webex-webhook-secret"
    settings.APP_URL = "https://hub.example.com"
    _limits(settings, "webex")
    _connection(user, "webex", "ana@webex.example", fake.token, ["spark:people_read", *WEBEX_MEETINGS])

    response = user_client.post(URL, body("webex"), format="json")

    assert response.status_code == 201, response.json()
    egress_route.check(webex.base)


def test_zoom(settings, served, user_client, egress_route):
    fake = FakeZoom()
    api, oauth = served(fake, "https://api.zoom.test"), served(fake, "https://zoom.test")
    settings.ZOOM_ACCOUNT_ID, settings.ZOOM_CLIENT_ID = fake.account_id, fake.client_id
    settings.ZOOM_CLIENT_SECRET, settings.ZOOM_WEBHOOK_SECRET_TOKEN = fake.client_secret, fake.webhook_secret
    settings.ZOOM_API_BASE, settings.ZOOM_OAUTH_TOKEN_URL = api.base + "/v2", oauth.base + "/oauth/token"
    _limits(settings, "zoom")

    response = user_client.post(URL, body("zoom"), format="json")

    assert response.status_code == 201, response.json()
    egress_route.check(api.base, oauth.base)  # the token request too


def test_google_meet_drive_download(settings, served, user, egress_route):
    fake = FakeDrive()
    drive = served(fake, "https://www.googleapis.com")
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-client-secret"
    settings.GOOGLE_DRIVE_API_BASE = drive.base + "/drive/v3"
    _limits(settings, "google_meet", "google_drive")
    conn = _connection(user, "google_oauth", "ada@example.com", fake.token, ["openid"])

    response = google_meet.recording_stream(conn=conn, download_url=google_meet.drive_media_url("1AbC"))

    assert response.read() == MP4
    response.close()
    egress_route.check(drive.base)


def test_google_meet_calendar_over_httplib2(settings, user, user_client, egress_route):
    from .fakes import FakeGoogle
    from .google_wire import GoogleOnTheWire

    fake = FakeGoogle()
    wire = GoogleOnTheWire(fake)
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-client-secret"
    settings.GOOGLE_CALENDAR_API_BASE = wire.base + "/calendar/v3"
    _limits(settings, "google_meet")
    _connection(
        user, "google_oauth", "ada@example.com", fake.token, ["https://www.googleapis.com/auth/calendar.events"]
    )
    try:
        response = user_client.post(URL, body("google_meet"), format="json")
    finally:
        wire.stop()

    assert response.status_code == 201, response.json()
    egress_route.check(wire.base)


@pytest.mark.redis
def test_free_busy_google_and_graph(settings, client_for, egress_route):
    fake = FakeFreeBusy()
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-client-secret"
    settings.MICROSOFT_CLIENT_ID, settings.MICROSOFT_CLIENT_SECRET = "ms-client-id", "ms-client-secret"
    settings.GOOGLE_CALENDAR_API_BASE, settings.GRAPH_API_BASE = fake.google_base, fake.graph_base
    group = Group.objects.create(name="acme")
    ada, bo = UserFactory(username="ada"), UserFactory(username="bo")
    for person in (ada, bo):
        person.groups.add(group)
    calendar(fake, ada, "google", "ada@gmail.test")
    calendar(fake, bo, "microsoft", "bo@contoso.test")
    try:
        ask = {"users": [{"id": ada.pk}, {"id": bo.pk}], "duration_minutes": 60, **MONDAY}
        response = client_for(ada).post("/api/v1/scheduling/availability/", ask, format="json")
    finally:
        fake.stop()

    assert response.status_code == 200, response.content
    assert fake.count("google") == 1 and fake.count("graph") == 1
    egress_route.check(fake.base)
    if not egress_route.exempt:
        paths = {target.split(fake.base, 1)[1].split("?")[0] for _, target in egress_route.proxy.seen}
        assert paths == {"/calendar/v3/freeBusy", "/graph/v1.0/me/calendar/getSchedule"}  # both clients


def test_a_graph_request_reads_no_proxy_variable(settings, served, user, no_proxy_environment, environ_reads):
    fake = FakeGraphCalendar()
    _microsoft(settings, served, fake)
    _limits(settings, "microsoft_calendar")
    no_proxy_environment.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    no_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
    conn = _connection(
        user, "microsoft_oauth", "grace@contoso.com", fake.token, ["Calendars.ReadWrite"], capabilities=("calendar",)
    )
    graph_events.calendars_list(conn)  # Graph's host asked once, under the environment of the moment
    reads = environ_reads()

    graph_events.calendars_list(conn)

    assert not [name for name in reads if "proxy" in name.lower()]
