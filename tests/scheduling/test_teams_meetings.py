"""Teams meetings through Graph: an event with a Teams meeting (invitations), its onlineMeeting for the lobby."""

import datetime as dt

import pytest

from integrations.models import ProviderCall
from scheduling.models import Meeting

from ..factories import UserFactory
from .helpers import URL, body, later

pytestmark = pytest.mark.django_db
PEOPLE = [{"email": "ana@contoso.com", "name": "Ana Lima"}, {"email": "bo@example.com"}]


def test_creating_a_teams_meeting_answers_graphs_join_url_passcode_and_dial_in(user_client, teams_conn, graph):
    response = user_client.post(URL, body("teams", agenda="Numbers", participants=PEOPLE), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    [(eid, event)] = graph.events.items()
    [online] = graph.online.values()
    assert data["meeting_id"] == eid and data["join_url"] == online["joinWebUrl"]
    assert data["passcode"] == online["joinMeetingIdSettings"]["passcode"] and data["connection"] == teams_conn.pk
    assert {"number": "+1 800-555-0100", "type": "toll_free", "country": ""} in data["dial_in"]
    assert event["isOnlineMeeting"] is True and event["onlineMeetingProvider"] == "teamsForBusiness"
    assert [a["emailAddress"]["address"] for a in event["attendees"]] == ["ana@contoso.com", "bo@example.com"]
    assert event["start"]["timeZone"] == "UTC" and event["body"]["content"] == "Numbers"
    ops = list(ProviderCall.objects.filter(provider="teams").order_by("pk").values_list("operation", flat=True))
    assert ops == ["event.create", "onlineMeeting.find"]


def test_the_lobby_and_auto_recording_are_set_on_the_online_meeting(user_client, teams_conn, graph):
    settings = {"waiting_room": True, "auto_recording": "cloud"}
    response = user_client.post(URL, body("teams", settings=settings), format="json")
    assert response.status_code == 201, response.json()
    [online] = graph.online.values()
    assert online["lobbyBypassSettings"] == {"scope": "organizer", "isDialInBypassEnabled": False}
    assert online["recordAutomatically"] is True


@pytest.mark.parametrize(
    "extra,capability",
    [
        ({"breakout_rooms": [{"name": "A", "participants": ["ana@contoso.com"]}], "participants": PEOPLE}, "breakout_rooms"),
        ({"settings": {"mute_on_entry": True}}, "mute_on_entry"),
        ({"settings": {"auto_recording": "local"}}, "local_recording"),
        ({"settings": {"registration": True}}, "registrants"),
    ],
)  # fmt: skip
def test_what_graph_cannot_do_is_422_naming_the_capability(user_client, teams_conn, graph, extra, capability):
    response = user_client.post(URL, body("teams", **extra), format="json")
    assert response.status_code == 422 and response.json()["error"] == "unsupported_by_provider"
    assert response.json()["capability"] == capability and graph.requests == []


def test_moving_a_teams_meeting_patches_the_event_start_and_end(user_client, teams_conn, graph):
    meeting = user_client.post(URL, body("teams"), format="json").json()
    new_start = later(days=9)
    response = user_client.patch(
        f"{URL}{meeting['id']}/", {"start_time": new_start, "duration_minutes": 30}, format="json"
    )
    assert response.status_code == 200, response.json()
    event = graph.events[meeting["meeting_id"]]
    end = dt.datetime.fromisoformat(new_start) + dt.timedelta(minutes=30)
    assert event["start"]["dateTime"] == new_start[:19] and event["end"]["dateTime"] == end.strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    assert response.json()["duration_minutes"] == 30


def test_cancelling_cancels_the_event_which_tells_attendees_and_is_idempotent(user_client, teams_conn, graph):
    meeting = user_client.post(URL, body("teams", participants=PEOPLE), format="json").json()
    assert user_client.delete(f"{URL}{meeting['id']}/").json()["status"] == "cancelled"
    assert [eid for eid, _ in graph.cancelled] == [meeting["meeting_id"]]
    assert user_client.delete(f"{URL}{meeting['id']}/").status_code == 200 and len(graph.cancelled) == 1


def test_an_event_already_gone_at_graph_still_cancels(user_client, teams_conn, graph):
    meeting = user_client.post(URL, body("teams"), format="json").json()
    graph.events.clear()
    assert user_client.delete(f"{URL}{meeting['id']}/?notify=false").json()["status"] == "cancelled"


def test_moving_an_event_gone_at_graph_is_a_409_and_cancels_the_row(user_client, teams_conn, graph):
    meeting = user_client.post(URL, body("teams"), format="json").json()
    graph.events.clear()
    response = user_client.patch(f"{URL}{meeting['id']}/", {"start_time": later(days=9)}, format="json")
    assert response.status_code == 409 and response.json()["error"] == "meeting_cancelled", response.json()
    assert Meeting.objects.get().status == "cancelled"


def test_a_graph_429_is_a_503_with_its_retry_after(user_client, teams_conn, graph):
    graph.fail_next.append((429, {"error": {"code": "TooManyRequests", "message": "slow down"}}, {"Retry-After": "7"}))
    response = user_client.post(URL, body("teams"), format="json")
    assert response.status_code == 503 and response.json()["error"] == "provider_rate_limited"
    assert response["Retry-After"] == "7" and not Meeting.objects.exists()


def test_without_a_microsoft_connection_it_is_400_naming_connection(client_for, graph):
    response = client_for(UserFactory()).post(URL, body("teams"), format="json")
    assert response.status_code == 400 and "connection" in response.json()["detail"]
    assert graph.requests == []


def test_another_users_connection_is_404(client_for, teams_conn, graph):
    response = client_for(UserFactory()).post(URL, body("teams", connection=teams_conn.pk), format="json")
    assert response.status_code == 404 and graph.requests == []


def test_another_users_meeting_is_404(user_client, client_for, teams_conn, graph):
    meeting = user_client.post(URL, body("teams"), format="json").json()
    other = client_for(UserFactory())
    assert other.get(f"{URL}{meeting['id']}/").status_code == 404
    assert other.delete(f"{URL}{meeting['id']}/").status_code == 404
    assert graph.events


def test_recordings_need_the_meeting_records_grant(user_client, teams_conn, graph):
    meeting = user_client.post(URL, body("teams"), format="json").json()
    response = user_client.get(f"{URL}{meeting['id']}/recordings/")
    assert response.status_code == 403 and response.json()["error"] == "missing_scope"
    assert "OnlineMeetingRecording.Read.All" in response.json()["missing_scopes"]


def test_recordings_and_transcripts_are_listed_and_stream_through_the_hub(user_client, api_client, teams_conn, graph):
    teams_conn.scopes += ["OnlineMeetingRecording.Read.All", "OnlineMeetingTranscript.Read.All"]
    teams_conn.capabilities += ["meeting_records"]
    teams_conn.save()
    meeting = user_client.post(URL, body("teams"), format="json").json()
    oid = Meeting.objects.get(pk=meeting["id"]).external_uuid
    graph.record(oid)
    rows = user_client.get(f"{URL}{meeting['id']}/recordings/").json()
    assert sorted(r["recording_type"] for r in rows) == ["recording", "transcript"]
    rec = next(r for r in rows if r["recording_type"] == "recording")
    download = api_client.get(rec["link"].replace("http://testserver", ""))
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"TEAMSMP4" * 100
