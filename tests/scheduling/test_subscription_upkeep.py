"""One hourly beat keeps every meeting lifecycle subscription (Google Meet's and Teams') up to date."""

import pytest
from django.conf import settings

from scheduling import meet_events, tasks

pytestmark = pytest.mark.django_db


def test_one_beat_entry_runs_the_upkeep_of_both_providers():
    entries = [e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()]
    assert entries.count("scheduling.meeting_subscriptions_due") == 1
    assert "scheduling.meet_subscriptions_due" not in entries
    assert "scheduling.teams_subscriptions_renew_due" not in entries
    assert set(tasks.meeting_subscriptions_due()) == {"google_meet", "teams"}


def test_a_failing_provider_sweep_does_not_stop_the_other(monkeypatch, caplog):
    def broken():
        raise RuntimeError("Google's API changed")

    monkeypatch.setattr(meet_events, "meet_subscriptions_due", broken)
    done = tasks.meeting_subscriptions_due()
    assert "google_meet" not in done and done["teams"] == {"renew": 0, "new": 0, "ended": 0}
    assert "meeting subscription upkeep failed" in caplog.text
