"""POST /api/v1/scheduling/availability/ against a local Google + Graph free/busy provider (real SDK HTTP)."""

import json
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import responses
from django.contrib.auth.models import Group
from django.utils import timezone

from integrations.models import Connection, ProviderCall
from scheduling.availability import busy_cache_invalidate
from tests.factories import UserFactory
from tests.integrations.factories import ConnectionFactory
from tests.integrations.oauth.conftest import GOOGLE_TOKEN_URL

from .factories import CalendarFactory
from .freebusy_fake import FakeFreeBusy

URL = "/api/v1/scheduling/availability/"
GCAL = "https://www.googleapis.com/auth/calendar."
# Monday 7 December 2026: Berlin is UTC+1, New York UTC-5; their 09-17 overlap is 14:00-16:00 UTC.
MONDAY = {"start": "2026-12-07T00:00:00Z", "end": "2026-12-08T00:00:00Z"}

pytestmark = [pytest.mark.django_db, pytest.mark.redis]


@pytest.fixture
def fb(settings):
    fake = FakeFreeBusy()
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "google-client-id", "google-client-secret"
    settings.MICROSOFT_CLIENT_ID, settings.MICROSOFT_CLIENT_SECRET = "ms-client-id", "ms-client-secret"
    settings.APP_URL = "https://hub.example.com"
    settings.GOOGLE_CALENDAR_API_BASE = fake.google_base
    settings.GRAPH_API_BASE = fake.graph_base
    yield fake
    fake.stop()


def calendar(fb, user, kind, account, **kw):
    token = f"token-{account}"
    fb.account(token, account)
    google = kind == "google"
    return ConnectionFactory(
        owner=user,
        provider="google_oauth" if google else "microsoft_oauth",
        account=account,
        capabilities=["calendar"],
        scopes=[f"{GCAL}events", f"{GCAL}readonly"] if google else ["Calendars.ReadWrite", "User.Read"],
        access_token=token,
        expires_at=timezone.now() + timedelta(hours=1),
        **kw,
    )


@pytest.fixture
def team(db, fb):
    """Ada (Berlin; two Google accounts) and Bo (New York; a Microsoft and a Google account) share a group."""
    group = Group.objects.create(name="acme")
    ada, bo = UserFactory(username="ada"), UserFactory(username="bo")
    for person in (ada, bo):
        person.groups.add(group)
    calendar(fb, ada, "google", "ada@gmail.test")
    calendar(fb, ada, "google", "ada@work.test")
    calendar(fb, bo, "microsoft", "bo@contoso.test")
    calendar(fb, bo, "google", "bo@gmail.test")
    return ada, bo


def ask(client, users, **extra):
    body = {"users": users, "duration_minutes": 60, "granularity_minutes": 60, **MONDAY, **extra}
    return client.post(URL, body, format="json")


def hours(tz):
    return {"time_zone": tz}


def starts(response):
    return [s["start"] for s in response.json()["slots"]]


class TestCommonSlots:
    def test_mixed_providers_and_zones_give_the_common_slots_inside_everyones_hours(self, fb, team, client_for):
        ada, bo = team
        fb.busy("ada@work.test", "2026-12-07T14:00:00Z", "2026-12-07T14:30:00Z")  # Ada's second Google account
        fb.busy("bo@contoso.test", "2026-12-07T16:00:00Z", "2026-12-07T17:00:00Z")  # Bo's Outlook
        fb.busy("bo@gmail.test", "2026-12-07T15:00:00Z", "2026-12-07T15:15:00Z")  # Bo's Gmail calendar

        response = ask(
            client_for(ada),
            [
                {"id": ada.pk, "working_hours": hours("Europe/Berlin")},
                {"id": bo.pk, "working_hours": hours("America/New_York")},
            ],
            working_hours_policy="required",
            granularity_minutes=15,
            duration_minutes=30,
        )

        assert response.status_code == 200, response.content
        # 14:00-16:00 UTC is everyone's working time; 14:00-14:30 and 15:00-15:15 are taken.
        assert starts(response) == ["2026-12-07T14:30:00Z", "2026-12-07T15:15:00Z", "2026-12-07T15:30:00Z"]
        assert response.json()["slots"][0] == {
            "start": "2026-12-07T14:30:00Z",
            "end": "2026-12-07T15:00:00Z",
            "score": 1.0,
            "inside_working_hours": 2,
            "outside_working_hours_of": [],
        }

    def test_each_connection_is_asked_once_with_one_request(self, fb, team, client_for):
        ada, bo = team
        response = ask(client_for(ada), [{"id": ada.pk}, {"id": bo.pk}])
        assert response.status_code == 200, response.content
        assert fb.count("google") == 3 and fb.count("graph") == 1
        calls = ProviderCall.objects.order_by("provider").values_list("provider", "operation", "outcome")
        assert sorted(calls) == [
            ("google_calendar", "freebusy.query", "ok"),
            ("google_calendar", "freebusy.query", "ok"),
            ("google_calendar", "freebusy.query", "ok"),
            ("microsoft_calendar", "calendar.getSchedule", "ok"),
        ]
        google = [r for r in fb.requests if r[1].endswith("freeBusy")]
        assert {r[3] for r in google} == {"token-ada@gmail.test", "token-ada@work.test", "token-bo@gmail.test"}
        assert all(r[2]["items"] == [{"id": "primary"}] for r in google)
        graph = next(r for r in fb.requests if r[1].endswith("getSchedule"))
        assert graph[2]["schedules"] == ["bo@contoso.test"] and graph[3] == "token-bo@contoso.test"

    def test_a_repeated_question_is_answered_from_the_cache_until_a_push_invalidates_it(self, fb, team, client_for):
        ada, bo = team
        client = client_for(ada)
        first = ask(client, [{"id": ada.pk}, {"id": bo.pk}])
        again = ask(client, [{"id": ada.pk}, {"id": bo.pk}], duration_minutes=30)
        assert first.json()["connections"] == {"asked": 4, "cached": 0}
        assert again.json()["connections"] == {"asked": 0, "cached": 4}
        assert len(fb.requests) == 4

        bo_outlook = Connection.objects.get(account="bo@contoso.test")
        fb.busy("bo@contoso.test", "2026-12-07T09:00:00Z", "2026-12-07T18:00:00Z")
        busy_cache_invalidate(bo_outlook.pk)
        third = ask(client, [{"id": ada.pk}, {"id": bo.pk}], working_hours_policy="any")
        assert third.json()["connections"] == {"asked": 1, "cached": 3}
        assert starts(third) and all(not ("09:00" <= s[11:16] < "18:00") for s in starts(third))

    def test_graph_tentative_and_oof_block_but_free_and_working_elsewhere_do_not(self, fb, team, client_for):
        ada, bo = team
        fb.busy("bo@contoso.test", "2026-12-07T14:00:00Z", "2026-12-07T15:00:00Z", status="tentative")
        fb.busy("bo@contoso.test", "2026-12-07T15:00:00Z", "2026-12-07T16:00:00Z", status="free")
        fb.busy("bo@contoso.test", "2026-12-07T16:00:00Z", "2026-12-07T17:00:00Z", status="workingElsewhere")
        fb.busy("bo@contoso.test", "2026-12-07T17:00:00Z", "2026-12-07T18:00:00Z", status="oof")
        response = ask(client_for(ada), [{"id": bo.pk}], working_hours_policy="any")
        taken = {s[11:16] for s in starts(response)}
        assert "14:00" not in taken and "17:00" not in taken
        assert {"15:00", "16:00"} <= taken

    def test_microsoft_working_hours_are_the_default_and_windows_zones_are_mapped(self, fb, team, client_for):
        ada, bo = team
        fb.working_hours["bo@contoso.test"] = {
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "16:00:00.0000000",
            "timeZone": {"name": "Pacific Standard Time"},
        }
        response = ask(client_for(ada), [{"id": bo.pk}], working_hours_policy="required")
        assert response.status_code == 200, response.content
        used = response.json()["users"][0]["working_hours"]
        assert used == {
            "time_zone": "America/Los_Angeles",
            "days": [1, 2, 3, 4, 5],
            "start": "08:00",
            "end": "16:00",
            "source": "microsoft",
        }
        # 08:00-16:00 Pacific (UTC-8) is 16:00-24:00 UTC.
        assert [s[11:16] for s in starts(response)][:1] == ["16:00"]
        assert sorted(s[11:16] for s in starts(response)) == [f"{h}:00" for h in range(16, 24)]

    def test_the_request_overrides_stored_hours_and_defaults_fill_the_rest(self, fb, team, client_for):
        ada, bo = team
        response = ask(
            client_for(ada),
            [{"id": ada.pk, "working_hours": {"time_zone": "Asia/Tokyo", "start": "10:00"}}, {"id": bo.pk}],
            time_zone="America/New_York",
            working_hours={"days": [1, 2, 3], "end": "12:00"},
        )
        used = {u["id"]: u["working_hours"] for u in response.json()["users"]}
        assert used[ada.pk] == {
            "time_zone": "Asia/Tokyo", "days": [1, 2, 3], "start": "10:00", "end": "12:00", "source": "request",
        }  # fmt: skip
        assert used[bo.pk] == {
            "time_zone": "America/New_York", "days": [1, 2, 3], "start": "09:00", "end": "12:00", "source": "default",
        }  # fmt: skip

    def test_ranking_prefers_slots_inside_more_peoples_hours(self, fb, team, client_for):
        ada, bo = team
        response = ask(
            client_for(ada),
            [
                {"id": ada.pk, "working_hours": hours("Europe/Berlin")},
                {"id": bo.pk, "working_hours": hours("America/New_York")},
            ],
        )
        slots = response.json()["slots"]
        assert [s["start"][11:16] for s in slots[:2]] == ["14:00", "15:00"]
        assert [s["inside_working_hours"] for s in slots[:2]] == [2, 2]
        assert slots[2]["inside_working_hours"] == 1 and slots[2]["start"][11:16] == "08:00"
        assert slots[2]["outside_working_hours_of"] == [bo.pk]
        assert "working hours" in response.json()["ranking"]

    def test_nothing_of_another_users_calendar_leaks(self, fb, team, client_for):
        ada, bo = team
        fb.busy("bo@contoso.test", "2026-12-07T14:00:00Z", "2026-12-07T15:00:00Z")
        response = ask(client_for(ada), [{"id": ada.pk}, {"id": bo.pk}])
        text = json.dumps(response.json())
        assert "bo@" not in text and "Private" not in text and "token" not in text
        assert set(response.json()) == {
            "start", "end", "duration_minutes", "granularity_minutes", "working_hours_policy", "ranking",
            "users", "slots", "connections", "warnings",
        }  # fmt: skip

    def test_a_calendar_google_no_longer_knows_is_left_out_with_a_warning(self, fb, team, client_for):
        ada, _ = team
        fb.calendar_errors[("ada@work.test", "ada@work.test")] = "notFound"
        response = ask(client_for(ada), [{"id": ada.pk}])
        assert response.status_code == 200
        [warning] = response.json()["warnings"]
        assert warning["connection"] == Connection.objects.get(account="ada@work.test").pk


def listed(conn, calendar_id, role, *, primary=False, **entry):
    """A synced Calendar row of the connection, its raw the calendarList entry Google gave."""
    raw = {"kind": "calendar#calendarListEntry", "id": calendar_id, "accessRole": role, **entry}
    if primary:
        raw["primary"] = True
    return CalendarFactory(connection=conn, external_id=calendar_id, primary=primary, access_role=role, raw=raw)


class TestWhichGoogleCalendarsCount:
    SIDE = "side-project@group.calendar.google.com"
    HOLIDAYS = "en.usa#holiday@group.v.calendar.google.com"
    TEAM = "team@group.calendar.google.com"
    ARCHIVE = "archive@group.calendar.google.com"
    BOSS = "boss-travel@group.calendar.google.com"

    def test_an_owned_selected_calendar_blocks_and_read_only_shared_or_hidden_ones_do_not(self, fb, client_for):
        ada = UserFactory(username="ada")
        conn = calendar(fb, ada, "google", "ada@gmail.test")
        listed(conn, "ada@gmail.test", "owner", primary=True, selected=True)
        listed(conn, self.SIDE, "owner", selected=True)
        listed(conn, self.HOLIDAYS, "reader", selected=True)
        listed(conn, self.TEAM, "writer", selected=True)
        listed(conn, self.ARCHIVE, "owner")  # calendarList leaves out selected: false
        # Someone else's calendar shared with "make changes and manage sharing" is "owner" too.
        listed(conn, self.BOSS, "owner", selected=True, dataOwner="boss@gmail.test")
        fb.busy("ada@gmail.test", "2026-12-07T11:00:00Z", "2026-12-07T12:00:00Z")  # primary
        fb.busy("ada@gmail.test", "2026-12-07T14:00:00Z", "2026-12-07T15:00:00Z", calendar=self.SIDE)
        fb.busy("ada@gmail.test", "2026-12-07T00:00:00Z", "2026-12-08T00:00:00Z", calendar=self.HOLIDAYS)
        fb.busy("ada@gmail.test", "2026-12-07T09:00:00Z", "2026-12-07T10:00:00Z", calendar=self.TEAM)
        fb.busy("ada@gmail.test", "2026-12-07T16:00:00Z", "2026-12-07T17:00:00Z", calendar=self.ARCHIVE)
        fb.busy("ada@gmail.test", "2026-12-07T12:00:00Z", "2026-12-07T13:00:00Z", calendar=self.BOSS)

        response = ask(
            client_for(ada), [{"id": ada.pk, "working_hours": hours("UTC")}], working_hours_policy="required"
        )

        assert response.status_code == 200, response.content
        # 09-17 UTC: the primary's 11:00 and the side calendar's 14:00 are taken; the holiday, the team
        # calendar, the hidden archive and the boss's calendar take nothing.
        assert starts(response) == [f"2026-12-07T{h}:00:00Z" for h in ("09", "10", "12", "13", "15", "16")]
        [query] = [r for r in fb.requests if r[1].endswith("freeBusy")]
        assert query[2]["items"] == [{"id": "primary"}, {"id": self.SIDE}]  # one request for both
        assert ProviderCall.objects.filter(operation="freebusy.query").count() == 1

    def test_a_calendar_synced_later_is_asked_about_instead_of_the_cached_answer(self, fb, client_for):
        ada = UserFactory(username="ada")
        conn = calendar(fb, ada, "google", "ada@gmail.test")
        fb.busy("ada@gmail.test", "2026-12-07T14:00:00Z", "2026-12-07T15:00:00Z", calendar=self.SIDE)
        me = [{"id": ada.pk, "working_hours": hours("UTC")}]
        first = ask(client_for(ada), me, working_hours_policy="required")
        assert "2026-12-07T14:00:00Z" in starts(first)  # only the primary was known

        listed(conn, "ada@gmail.test", "owner", primary=True, selected=True)
        listed(conn, self.SIDE, "owner", selected=True)
        again = ask(client_for(ada), me, working_hours_policy="required")

        assert again.json()["connections"] == {"asked": 1, "cached": 0}
        assert "2026-12-07T14:00:00Z" not in starts(again)

    def test_a_microsoft_account_is_asked_for_its_mailbox_whatever_calendars_it_lists(self, fb, client_for):
        bo = UserFactory(username="bo")
        conn = calendar(fb, bo, "microsoft", "bo@contoso.test")
        CalendarFactory(connection=conn, kind="microsoft", external_id="AAMkSide", access_role="owner", raw={})
        assert ask(client_for(bo), [{"id": bo.pk}]).status_code == 200
        [graph] = [r for r in fb.requests if r[1].endswith("getSchedule")]
        assert graph[2]["schedules"] == ["bo@contoso.test"]


class TestWhoMayBeAskedAbout:
    def test_a_user_outside_the_callers_groups_is_404_like_one_that_does_not_exist(self, fb, team, client_for):
        ada, _ = team
        stranger = UserFactory()
        calendar(fb, stranger, "google", "stranger@gmail.test")
        for unknown in (stranger.pk, 999999):
            response = ask(client_for(ada), [{"id": ada.pk}, {"id": unknown}])
            assert response.status_code == 404
            assert response.json()["error"] == "user_not_found" and response.json()["user"] == unknown
        assert fb.requests == []  # nothing was asked before the refusal

    def test_staff_may_ask_about_anyone(self, fb, team, client_for, staff_user):
        ada, bo = team
        response = ask(client_for(staff_user), [{"id": ada.pk}, {"id": bo.pk}])
        assert response.status_code == 200, response.content

    def test_an_inactive_user_is_not_found(self, fb, team, client_for):
        ada, bo = team
        bo.is_active = False
        bo.save()
        assert ask(client_for(ada), [{"id": bo.pk}]).status_code == 404

    def test_someone_without_a_calendar_is_a_clear_422(self, fb, team, client_for):
        ada, _ = team
        mate = UserFactory()
        mate.groups.add(*ada.groups.all())
        response = ask(client_for(ada), [{"id": mate.pk}])
        assert response.status_code == 422
        assert response.json()["error"] == "no_calendar_connected" and response.json()["user"] == mate.pk

    def test_anonymous_callers_are_refused(self, fb, team, api_client):
        assert ask(api_client, [{"id": team[0].pk}]).status_code == 401


class TestBadInput:
    @pytest.mark.parametrize(
        "change, field",
        [
            ({"end": "2026-12-06T00:00:00Z"}, "end"),
            ({"end": "2027-01-15T00:00:00Z"}, "end"),
            ({"start": "9999-12-31T00:00:00Z", "end": "9999-12-31T23:00:00Z"}, "start"),
            ({"time_zone": "Mars/Olympus"}, "time_zone"),
            # Folders of the tz database, not zones: ZoneInfo raises IsADirectoryError for them (was a 500).
            ({"time_zone": "America"}, "time_zone"),
            ({"time_zone": "America/Indiana"}, "time_zone"),
            ({"duration_minutes": 0}, "duration_minutes"),
            ({"duration_minutes": -30}, "duration_minutes"),
            ({"start": "2026-12-07T00:00:00"}, "start"),
            ({"start": "2026-12-07T12:99:00Z"}, "start"),  # shaped like a date-time, but no minute 99 (was a 500)
            ({"granularity_minutes": 7}, "granularity_minutes"),
            ({"working_hours_policy": "sometimes"}, "working_hours_policy"),
            ({"users": []}, "users"),
        ],
    )
    def test_it_answers_400_naming_the_field(self, fb, team, client_for, change, field):
        ada, _ = team
        body = {"users": [{"id": ada.pk}], "duration_minutes": 60, **MONDAY, **change}
        response = client_for(ada).post(URL, body, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["error"] == "invalid"
        assert field in response.json()["fields"], response.json()
        assert f"{field}:" in response.json()["detail"]
        assert fb.requests == []

    @pytest.mark.parametrize("name", ["Europe/Atlantis", "Europe", "America/Argentina"])
    def test_an_unknown_zone_in_one_users_hours_is_400(self, fb, team, client_for, name):
        ada, _ = team
        response = ask(client_for(ada), [{"id": ada.pk, "working_hours": {"time_zone": name}}])
        assert response.status_code == 400
        assert "time_zone" in json.dumps(response.json()["fields"])
        assert fb.requests == []

    def test_too_many_users_is_400(self, fb, team, client_for, settings):
        settings.AVAILABILITY_MAX_USERS = 1
        ada, bo = team
        response = ask(client_for(ada), [{"id": ada.pk}, {"id": bo.pk}])
        assert response.status_code == 400 and "users" in response.json()["fields"]


class TestProviderTrouble:
    def test_graph_429_is_503_with_its_retry_after(self, fb, team, client_for):
        ada, bo = team
        Connection.objects.filter(provider="google_oauth", owner=bo).delete()
        fb.fail_next(429, headers={"Retry-After": "7"}, body={"error": {"code": "TooManyRequests", "message": "slow"}})
        response = ask(client_for(ada), [{"id": bo.pk}])
        assert response.status_code == 503
        assert response.json()["error"] == "provider_rate_limited"
        assert response["Retry-After"] == "7"
        assert ProviderCall.objects.get().outcome == "rate_limited"

    def test_google_403_rate_limit_exceeded_is_503_with_retry_after(self, fb, team, client_for):
        ada, _ = team
        Connection.objects.filter(account="ada@work.test").delete()
        fb.fail_next(
            403,
            body={
                "error": {"code": 403, "message": "Rate Limit Exceeded", "errors": [{"reason": "rateLimitExceeded"}]}
            },
        )
        response = ask(client_for(ada), [{"id": ada.pk}])
        assert response.status_code == 503
        assert response.json()["error"] == "provider_rate_limited"
        assert int(response["Retry-After"]) >= 1

    def test_a_failed_answer_is_not_cached(self, fb, team, client_for):
        ada, _ = team
        Connection.objects.filter(account="ada@work.test").delete()
        fb.fail_next(500)
        assert ask(client_for(ada), [{"id": ada.pk}]).status_code == 502
        again = ask(client_for(ada), [{"id": ada.pk}])
        assert again.status_code == 200 and again.json()["connections"] == {"asked": 1, "cached": 0}

    def test_the_callers_connection_needing_reauth_is_409_naming_it_with_the_repair_url(self, fb, team, client_for):
        ada, _ = team
        broken = Connection.objects.get(account="ada@work.test")
        broken.status, broken.status_detail = Connection.Status.NEEDS_REAUTH, "invalid_grant"
        broken.save()
        response = ask(client_for(ada), [{"id": ada.pk}])
        assert response.status_code == 409
        body = response.json()
        assert body["error"] == "connection_needs_reauth" and body["connection"] == broken.pk
        assert body["authorization_url"].startswith("https://accounts.google.com/")
        assert fb.requests == []

    def test_another_users_connection_needing_reauth_is_409_without_their_repair_url(self, fb, team, client_for):
        ada, bo = team
        broken = Connection.objects.get(account="bo@contoso.test")
        broken.status = Connection.Status.NEEDS_REAUTH
        broken.save()
        response = ask(client_for(ada), [{"id": ada.pk}, {"id": bo.pk}])
        assert response.status_code == 409
        body = response.json()
        assert body["connection"] == broken.pk and body["user"] == bo.pk
        assert "authorization_url" not in body

    def test_an_unconfigured_provider_is_503_provider_not_configured(self, fb, team, client_for, settings):
        settings.MICROSOFT_CLIENT_SECRET = ""
        ada, bo = team
        response = ask(client_for(ada), [{"id": bo.pk}])
        assert response.status_code == 503
        assert response.json()["error"] == "provider_not_configured"


class TestGraphTokenRefused:
    """Graph answers 401 to a token its stored expiry still calls good (revoked early, rotated): one refresh
    through the hub, and getSchedule is asked once more, as every other Graph call does (oauth.bearer_auth)."""

    REFRESHED = {
        "token_type": "Bearer",
        "scope": "Calendars.ReadWrite User.Read",
        "expires_in": 3600,
        "access_token": "access-1",
        "refresh_token": "M.R_1",
    }

    @pytest.fixture
    def bo_outlook(self, fb, idp, team):
        _, bo = team
        Connection.objects.filter(provider="google_oauth", owner=bo).delete()
        conn = Connection.objects.get(account="bo@contoso.test")
        conn.access_token, conn.refresh_token = "revoked-early", "M.R_0"  # an hour left, but Graph refuses it
        conn.save()
        return conn

    def graph_tokens(self, fb):
        return [r[3] for r in fb.requests if r[1].endswith("getSchedule")]

    def test_a_401_refreshes_once_and_getschedule_is_asked_again(self, fb, idp, team, bo_outlook, client_for):
        ada, bo = team
        idp.token_responses = [(200, self.REFRESHED)]
        fb.account("access-1", "bo@contoso.test")
        fb.busy("bo@contoso.test", "2026-12-07T14:00:00Z", "2026-12-07T15:00:00Z")
        response = ask(client_for(ada), [{"id": bo.pk}], working_hours_policy="any")
        assert response.status_code == 200, response.content
        assert "2026-12-07T14:00:00Z" not in starts(response) and "2026-12-07T15:00:00Z" in starts(response)
        assert self.graph_tokens(fb) == ["revoked-early", "access-1"]
        assert [f["refresh_token"] for f in idp.token_requests()] == ["M.R_0"]
        bo_outlook.refresh_from_db()
        assert (bo_outlook.access_token, bo_outlook.refresh_token, bo_outlook.status) == ("access-1", "M.R_1", "active")

    def test_a_refused_refresh_is_409_naming_the_connection_without_another_users_repair_url(
        self, fb, idp, team, bo_outlook, client_for
    ):
        ada, bo = team
        idp.token_responses = [(400, {"error": "invalid_grant", "error_description": "AADSTS50173: revoked"})]
        response = ask(client_for(ada), [{"id": bo.pk}])
        assert response.status_code == 409, response.content
        body = response.json()
        assert body["error"] == "connection_needs_reauth"
        assert body["connection"] == bo_outlook.pk and body["user"] == bo.pk
        assert "authorization_url" not in body
        assert Connection.objects.get(pk=bo_outlook.pk).status == "needs_reauth"

    def test_a_new_token_refused_too_is_graphs_error_after_one_refresh(self, fb, idp, team, bo_outlook, client_for):
        ada, bo = team
        idp.token_responses = [(200, self.REFRESHED)]  # access-1 is no account's token at the fake either
        response = ask(client_for(ada), [{"id": bo.pk}])
        assert response.status_code == 502, response.content
        assert self.graph_tokens(fb) == ["revoked-early", "access-1"]
        assert len(idp.token_requests()) == 1
        assert Connection.objects.get(pk=bo_outlook.pk).status == "active"


class TestGoogleTokenRefused:
    """Google answers 401 to a token its stored expiry still calls good (revoked early, rotated): one refresh
    through the hub, on the event loop in a db_hop (Google's SDK runs on a pool that must not use the database),
    and freebusy.query is asked once more."""

    REFRESHED = {"access_token": "ya29.new", "expires_in": 3599, "token_type": "Bearer"}

    @pytest.fixture
    def token_endpoint(self):
        with responses.RequestsMock() as rsps:
            yield rsps

    @pytest.fixture
    def bo_gmail(self, fb, team):
        _, bo = team
        Connection.objects.filter(provider="microsoft_oauth", owner=bo).delete()
        conn = Connection.objects.get(account="bo@gmail.test")
        conn.access_token, conn.refresh_token = "ya29.revoked-early", "1//r0"  # an hour left, but Google refuses it
        conn.save()
        return conn

    def google_tokens(self, fb):
        return [r[3] for r in fb.requests if r[1].endswith("freeBusy")]

    def test_a_401_refreshes_once_and_freebusy_is_asked_again(self, fb, team, bo_gmail, token_endpoint, client_for):
        ada, bo = team
        token_endpoint.add(responses.POST, GOOGLE_TOKEN_URL, json=self.REFRESHED)
        fb.account("ya29.new", "bo@gmail.test")
        fb.busy("bo@gmail.test", "2026-12-07T14:00:00Z", "2026-12-07T15:00:00Z")
        response = ask(client_for(ada), [{"id": bo.pk}], working_hours_policy="any")
        assert response.status_code == 200, response.content
        assert "2026-12-07T14:00:00Z" not in starts(response) and "2026-12-07T15:00:00Z" in starts(response)
        assert self.google_tokens(fb) == ["ya29.revoked-early", "ya29.new"]
        assert [parse_qs(c.request.body)["refresh_token"] for c in token_endpoint.calls] == [["1//r0"]]
        bo_gmail.refresh_from_db()
        assert (bo_gmail.access_token, bo_gmail.status) == ("ya29.new", "active")
        assert bo_gmail.expires_at > timezone.now() + timedelta(minutes=55)

    def test_a_refused_refresh_is_409_naming_the_connection_without_another_users_repair_url(
        self, fb, team, bo_gmail, token_endpoint, client_for
    ):
        ada, bo = team
        token_endpoint.add(
            responses.POST,
            GOOGLE_TOKEN_URL,
            status=400,
            json={"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
        )
        response = ask(client_for(ada), [{"id": bo.pk}])
        assert response.status_code == 409, response.content
        body = response.json()
        assert body["error"] == "connection_needs_reauth"
        assert body["connection"] == bo_gmail.pk and body["user"] == bo.pk
        assert "authorization_url" not in body
        assert Connection.objects.get(pk=bo_gmail.pk).status == "needs_reauth"
        assert self.google_tokens(fb) == ["ya29.revoked-early"]

    def test_the_callers_own_refused_refresh_carries_the_repair_url(
        self, fb, team, bo_gmail, token_endpoint, client_for
    ):
        _, bo = team
        token_endpoint.add(responses.POST, GOOGLE_TOKEN_URL, status=400, json={"error": "invalid_grant"})
        response = ask(client_for(bo), [{"id": bo.pk}])
        assert response.status_code == 409, response.content
        body = response.json()
        assert body["error"] == "connection_needs_reauth" and body["connection"] == bo_gmail.pk
        assert body["authorization_url"].startswith("https://accounts.google.com/")

    def test_a_new_token_refused_too_is_googles_error_after_one_refresh(
        self, fb, team, bo_gmail, token_endpoint, client_for
    ):
        ada, bo = team
        token_endpoint.add(responses.POST, GOOGLE_TOKEN_URL, json=self.REFRESHED)  # ya29.new is no account's token
        response = ask(client_for(ada), [{"id": bo.pk}])
        assert response.status_code == 502, response.content
        assert self.google_tokens(fb) == ["ya29.revoked-early", "ya29.new"]
        assert len(token_endpoint.calls) == 1
        assert Connection.objects.get(pk=bo_gmail.pk).status == "active"
