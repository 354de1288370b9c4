"""Browser tests: Playwright driving Debian's chromium against pytest-django's live server.

Never a browser download: the tests use the system chromium
(`apt-get install -y chromium`) and skip, saying so, when it is not installed.
Every request the page makes to anything but the live server is blocked and
recorded, so a page that pulls assets from outside fails its test.
"""

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "correct horse battery staple"


def _chromium_missing():
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (requirements-dev.txt)"
    return None


@pytest.fixture(scope="module")
def browser():
    why = _chromium_missing()
    if why:
        pytest.skip(f"browser tests need Chromium: {why}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, and Django
    # refuses ORM calls from such a thread, though the tests' set-ups are plain
    # synchronous code. Allowed only while this module's browser runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            # Root in a container: Chromium's sandbox needs user namespaces it may not have.
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    """A 1280 px wide page that may only talk to the live server; outside requests and JS errors are collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Paris")
    # A live server on a busy two-core machine (CI runs the suite beside nothing, developers beside each
    # other) can take longer than Playwright's 30 s default to answer the first page.
    context.set_default_timeout(90_000)
    page = context.new_page()
    page.outside_requests = []
    page.js_errors = []
    host = urlparse(live_server.url).netloc

    def guard(route):
        if urlparse(route.request.url).netloc == host or route.request.url.startswith("data:"):
            route.continue_()
        else:
            page.outside_requests.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and page.js_errors.append(msg.text))
    page.base = live_server.url
    yield page
    context.close()


@pytest.fixture
def staff_login(page, transactional_db):
    """Log in through the admin login form as a staff superuser; returns the user."""
    from tests.factories import UserFactory

    user = UserFactory(username="operator", is_staff=True, is_superuser=True)

    def login():
        page.goto(f"{page.base}/admin/login/?next=/admin/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#console-overview")
        return user

    return login


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name):
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
