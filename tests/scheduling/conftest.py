import pytest
import respx

from tests.integrations.oauth.conftest import idp  # noqa: F401 - fixture: Microsoft's token endpoint, for msal
from tests.privacy.conftest import eager, s3  # noqa: F401 - fixtures: tasks inline; a versioned bucket on moto

from .drive_fake import drive  # noqa: F401 - fixture: Meet's files in Google Drive
from .meet_events_fake import gmeet, meet_push_keys, records_conn  # noqa: F401 - fixtures: Meet lifecycle events
from .zoom_fake import API, OAUTH, FakeZoom


@pytest.fixture
def zoom(settings):
    """Zoom configured (Server-to-Server OAuth) and answered by the fake at httpx's transport."""
    fake = FakeZoom()
    settings.ZOOM_ACCOUNT_ID, settings.ZOOM_CLIENT_ID, settings.ZOOM_CLIENT_SECRET = (
        fake.account_id,
        fake.client_id,
        fake.client_secret,
    )
    settings.ZOOM_WEBHOOK_SECRET_TOKEN = fake.webhook_secret
    settings.ZOOM_API_BASE, settings.ZOOM_OAUTH_TOKEN_URL = API, OAUTH
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "zoom": {"requests": {"rate": 1000, "burst": 1000}}}
    with respx.mock(assert_all_called=False) as router:
        fake.routes(router)
        yield fake


def _connection(owner, provider, account, token, scopes, capabilities=("meetings",)):
    from datetime import timedelta

    from django.utils import timezone

    from tests.integrations.factories import ConnectionFactory

    return ConnectionFactory(
        owner=owner,
        provider=provider,
        account=account,
        capabilities=list(capabilities),
        scopes=list(scopes),
        access_token=token,
        expires_at=timezone.now() + timedelta(hours=1),
    )


@pytest.fixture
def graph(settings):
    """Microsoft configured, Graph answered by the fake at httpx's transport."""
    from .fakes import GRAPH, FakeGraph

    settings.MICROSOFT_CLIENT_ID, settings.MICROSOFT_CLIENT_SECRET = "ms-client-id", "ms-client-secret"
    settings.GRAPH_API_BASE = GRAPH
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "teams": {"requests": {"rate": 1000, "burst": 1000}}}
    fake = FakeGraph()
    with respx.mock(assert_all_called=False) as router:
        fake.routes(router)
        yield fake


@pytest.fixture
def teams_conn(user, graph):
    return _connection(
        user,
        "microsoft_oauth",
        "grace@contoso.com",
        graph.token,
        ["OnlineMeetings.ReadWrite", "Calendars.ReadWrite", "User.Read"],
    )


@pytest.fixture
def webex_api(settings):
    from .fakes import WEBEX, FakeWebex

    settings.WEBEX_CLIENT_ID, settings.WEBEX_CLIENT_SECRET = "webex-client-id", "webex-client-secret"
    settings.WEBEX_API_BASE = WEBEX
    settings.WEBEX_WEBHOOK_SECRET = "webex-webhook-secret"
    settings.APP_URL = "https://hub.example.com"
    # A first meeting is eight calls (the meeting, the webhook listing and six registrations): above Webex's burst.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "webex": {"requests": {"rate": 1000, "burst": 1000}}}
    fake = FakeWebex()
    with respx.mock(assert_all_called=False) as router:
        fake.routes(router)
        yield fake


@pytest.fixture
def webex_conn(user, webex_api):
    from scheduling.oauth_providers import WEBEX_MEETINGS

    return _connection(user, "webex", "ana@webex.example", webex_api.token, ["spark:people_read", *WEBEX_MEETINGS])


@pytest.fixture
def google(settings, monkeypatch):
    """Google configured; Calendar and Meet answered by the fake httplib2 transport."""
    from integrations import google_http

    from .fakes import FakeGoogle

    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-client-secret"
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "google_meet": {"requests": {"rate": 1000, "burst": 1000}}}
    fake = FakeGoogle()
    monkeypatch.setattr(google_http, "OneSendHttp", fake)
    return fake


@pytest.fixture
def meet_conn(user, google):
    return _connection(
        user,
        "google_oauth",
        "ada@example.com",
        google.token,
        ["https://www.googleapis.com/auth/calendar.events", "openid"],
    )


# --- Calendars ---------------------------------------------------------------------------------

CALENDAR_SCOPES = [
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.readonly",
]


@pytest.fixture
def gcal(settings, monkeypatch):
    """Google configured; Calendar answered by the fake httplib2 transport (with a change log)."""
    from integrations import google_http

    from .calendar_fakes import FakeGoogleCalendar

    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-client-secret"
    settings.GOOGLE_CALENDAR_CHANNEL_SECRET = "channel-secret-0123456789"
    settings.APP_URL = "https://hub.example.com"
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "google_calendar": {"requests": {"rate": 1000, "burst": 1000}}}
    fake = FakeGoogleCalendar()
    monkeypatch.setattr(google_http, "OneSendHttp", fake)
    return fake


@pytest.fixture
def gcal_conn(user, gcal):
    return _connection(user, "google_oauth", "ada@example.com", gcal.token, CALENDAR_SCOPES, capabilities=("calendar",))


@pytest.fixture
def calendars_eager():
    from config.celery import app as celery_app

    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous


@pytest.fixture
def mscal(settings):
    """Microsoft configured; Graph calendars answered by the fake at httpx's transport."""
    from .calendar_fakes import GRAPH, FakeGraphCalendar

    settings.MICROSOFT_CLIENT_ID, settings.MICROSOFT_CLIENT_SECRET = "ms-client-id", "ms-client-secret"
    settings.GRAPH_API_BASE = GRAPH
    settings.APP_URL = "https://hub.example.com"
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "microsoft_calendar": {"requests": {"rate": 1000, "burst": 1000}}}
    settings.CALENDAR_GRAPH_WINDOW_DAYS_BACK = 3650  # the tests' fixed 2026 dates stay inside the synced window
    fake = FakeGraphCalendar()
    with respx.mock(assert_all_called=False) as router:
        fake.routes(router)
        yield fake


@pytest.fixture
def mscal_conn(user, mscal):
    return _connection(
        user,
        "microsoft_oauth",
        "grace@contoso.com",
        mscal.token,
        ["Calendars.ReadWrite", "User.Read"],
        capabilities=("calendar",),
    )
