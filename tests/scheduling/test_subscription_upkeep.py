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


def test_staff_see_a_meetings_subscriptions_in_admin_without_their_secret(admin_client):
    from scheduling.models import MeetingSubscription

    from .factories import MeetingFactory

    meeting = MeetingFactory(provider="teams")
    MeetingSubscription.objects.create(
        meeting=meeting,
        provider="teams",
        kind="graph_recordings",
        external_id="sub-7d1e",
        client_state="never-shown-3f9a",
        last_error="Graph refused: no Teams licence",
    )
    listing = admin_client.get("/admin/scheduling/meetingsubscription/")
    page = admin_client.get(f"/admin/scheduling/meeting/{meeting.pk}/change/")
    assert listing.status_code == 200 and page.status_code == 200
    assert "graph_recordings" in listing.text and "sub-7d1e" in page.text and "no Teams licence" in page.text
    detail = admin_client.get(f"/admin/scheduling/meetingsubscription/{MeetingSubscription.objects.get().pk}/change/")
    assert detail.status_code == 200 and "sub-7d1e" in detail.text
    assert all("never-shown-3f9a" not in r.text for r in (listing, page, detail))
    # Provider records on a meeting are shown, never made by hand: no "Add another" row in any inline.
    for inline in ("subscriptions", "participants", "attendance", "recordings"):
        assert f'name="{inline}-MAX_NUM_FORMS" value="0"' in page.text, inline
