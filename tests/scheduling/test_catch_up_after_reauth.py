"""A calendar whose sync failed for want of authorization catches up once it is re-authorized."""

import datetime as dt

import pytest
import responses
from django.utils import timezone

from integrations.errors import DomainError
from integrations.models import Connection
from scheduling.calendars.sync import calendar_sync
from scheduling.models import Calendar, CalendarEvent

from ..integrations.oauth.conftest import GOOGLE_TOKEN_URL, google_id_token, query
from .test_calendar_google import calendar_id

pytestmark = pytest.mark.django_db
ADA = "ada@example.com"


def timed(start):
    end = start + dt.timedelta(minutes=30)
    return {
        "summary": "Review",
        "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
        "end": {"dateTime": end.isoformat(), "timeZone": "UTC"},
    }


@responses.activate
def test_a_calendar_missed_while_its_connection_needed_reauth_is_synced_once_reauthorized(
    user_client, gcal_conn, gcal, eager, django_capture_on_commit_callbacks
):
    cal = Calendar.objects.get(pk=calendar_id(user_client))
    calendar_sync(calendar_id=cal.pk)
    # The refresh token is refused: the connection needs re-authorization, and the next sync fails.
    Connection.objects.filter(pk=gcal_conn.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=5))
    responses.add(responses.POST, GOOGLE_TOKEN_URL, status=400, json={"error": "invalid_grant"})
    missed = gcal.add(ADA, **timed(dt.datetime(2026, 5, 4, 10, tzinfo=dt.UTC)))
    Calendar.objects.filter(pk=cal.pk).update(sync_due=True)  # the push notification for that change
    with pytest.raises(DomainError):
        calendar_sync(calendar_id=cal.pk)
    assert Connection.objects.get(pk=gcal_conn.pk).status == Connection.Status.NEEDS_REAUTH

    # The user authorizes again; no further change happens on the calendar (no new notification).
    started = user_client.post(
        "/api/v1/connections/google/start/", {"capabilities": ["calendar"], "connection": gcal_conn.pk}, format="json"
    )
    state = query(started.json()["authorization_url"])["state"]
    gcal.token = "ya29.repaired"
    responses.replace(
        responses.POST,
        GOOGLE_TOKEN_URL,
        json={
            "access_token": "ya29.repaired",
            "expires_in": 3599,
            "refresh_token": "1//repaired",
            "scope": " ".join(gcal_conn.scopes),
            "token_type": "Bearer",
            "id_token": google_id_token(),
        },
    )
    with django_capture_on_commit_callbacks(execute=True):
        answer = user_client.get("/api/v1/connections/google/callback/", {"state": state, "code": "c2"})
    assert answer.status_code == 200, answer.content
    assert Connection.objects.get(pk=gcal_conn.pk).status == Connection.Status.ACTIVE

    assert CalendarEvent.objects.filter(calendar=cal, external_id=missed).exists()
