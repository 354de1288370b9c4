"""Sentry is opt-in, sends no personal data, and scrubs secrets: checked in a fresh process with a fake transport.

A separate process because sentry-sdk's Django integration patches Django for
the life of the process; the other tests must not run under it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from config.sentry import REDACTED, scrub_event

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, os
import django
django.setup()
import sentry_sdk
from sentry_sdk.transport import Transport
from django.conf import settings

events = []

class Capture(Transport):
    def capture_envelope(self, envelope):
        for item in envelope.items:
            if item.type == "event":
                events.append(item.payload.json)

active_at_start = sentry_sdk.get_client().is_active()
from config.sentry import sentry_init
sentry_init(dsn=settings.SENTRY_DSN, environment="test", transport=Capture)
secret = settings.STRIPE_SECRET_KEY
with sentry_sdk.new_scope() as scope:
    scope.set_extra("headers", {"Authorization": "Bearer abcdefghijklmnop", "X-Ok": "fine"})
    scope.set_extra("api_key", "plain-value-1234")
    try:
        raise ValueError(f"Stripe refused key {secret} for user alice@example.com")
    except ValueError as exc:
        sentry_sdk.capture_exception(exc)
sentry_sdk.flush()
print(json.dumps({"active_at_start": active_at_start, "events": events, "pii": sentry_sdk.get_client().options["send_default_pii"]}))
"""


def run(env_extra):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "STRIPE_SECRET_KEY": "sk_test_51abcdefghijklmnopqrstuv",
        **env_extra,
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sentry_is_off_without_a_dsn_and_scrubs_what_it_sends_with_one():
    import sentry_sdk

    assert not sentry_sdk.get_client().is_active()  # this process: the test settings set no DSN

    on = run({"SENTRY_DSN": "https://public@sentry.example/1"})
    assert on["active_at_start"] is True and on["pii"] is False
    (event,) = on["events"]
    text = json.dumps(event)
    assert "sk_test_51abcdefghijklmnopqrstuv" not in text
    assert "abcdefghijklmnop" not in text and "plain-value-1234" not in text
    assert event["extra"]["headers"]["X-Ok"] == "fine"
    assert event["exception"]["values"][0]["type"] == "ValueError"


def test_scrubbing_walks_nested_events():
    event = {"request": {"headers": {"Cookie": "sessionid=1", "Accept": "json"}}, "list": [{"password": "x"}]}
    assert scrub_event(event) == {
        "request": {"headers": {"Cookie": REDACTED, "Accept": "json"}},
        "list": [{"password": REDACTED}],
    }
