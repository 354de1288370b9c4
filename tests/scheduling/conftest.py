import pytest
import respx

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
