"""Price watches: created by the owner, re-searched on a budgeted schedule, notifying on a drop only."""

import datetime as dt
import smtplib
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.test import TestCase
from django.utils import timezone

from integrations.models import Alert, ProviderCall
from integrations.states import IllegalTransition, transition
from travel import services
from travel.models import PricePoint, PriceWatch
from travel.services.watches import next_check_after, slot_seconds

from .conftest import day
from .duffel_fake import make_offer
from .factories import WatchFactory

# Tasks run inline when enqueued, as a worker would run them: the price-drop email is its own task.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager")]


def priced(*totals):
    """The fake answers these prices, one search after another (the last one repeats)."""
    queue = list(totals)

    def offers(slices):
        total = queue.pop(0) if len(queue) > 1 else queue[0]
        return [make_offer(slices, offer_id=f"off_{total}", total=total, airline="BA")]

    return offers


def check(watch, *, minutes_later=0):
    """Run one check as the task would, `minutes_later` after now (past the re-check guard), and what it enqueued."""
    with (
        time_machine.travel(timezone.now() + dt.timedelta(minutes=minutes_later)),
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        return services.watch_check(watch_id=watch.pk)


class FlakyMail(EmailBackend):
    """Django's test mailbox behind a mail server that answers the next `failures` sends with an SMTP error."""

    failures = []

    def send_messages(self, messages):
        if FlakyMail.failures:
            raise FlakyMail.failures.pop(0)
        return super().send_messages(messages)


@pytest.fixture
def flaky_mail(settings):
    settings.EMAIL_BACKEND = f"{__name__}.FlakyMail"
    fast = {"base": 0.001, "cap": 0.001, "max_retries": 2}
    settings.PROVIDER_RETRY = {**settings.PROVIDER_RETRY, "email": fast}
    FlakyMail.failures = []
    yield FlakyMail.failures
    FlakyMail.failures = []


def test_creating_a_watch_records_its_first_price_right_away(
    user_client, user, duffel, eager, django_capture_on_commit_callbacks
):
    duffel.offers_for = priced("450.00")
    with django_capture_on_commit_callbacks(execute=True):
        r = user_client.post(
            "/api/v1/travel/watches/",
            {
                "origin": "LHR",
                "destination": "JFK",
                "departure_date": day(30),
                "return_date": day(37),
                "passengers": {"adults": 2},
                "cabin_class": "premium_economy",
            },
            format="json",
        )
    assert r.status_code == 201, r.json()
    assert r.json()["notify_on"] == "any_drop"
    watch = PriceWatch.objects.get(pk=r.json()["id"])
    assert watch.owner == user and watch.status == "active"
    assert watch.last_price == Decimal("450.00") and watch.reference_price == Decimal("450.00")
    assert watch.currency == "GBP"
    sent = duffel.calls("POST", "/air/offer_requests")[0][3]["data"]
    assert [(s["origin"], s["destination"], s["departure_date"]) for s in sent["slices"]] == [
        ("LHR", "JFK", day(30)),
        ("JFK", "LHR", day(37)),
    ]
    assert sent["cabin_class"] == "premium_economy" and len(sent["passengers"]) == 2
    # The first check ran at once, off the watch's grid: the next is on it, at least 3/4 of the interval later.
    assert watch.next_check_at > timezone.now() + dt.timedelta(minutes=270)
    assert mail.outbox == []


def test_a_drop_by_the_percentage_notifies_the_owner_by_email_and_alert(duffel, settings):
    settings.TRAVEL_WATCH_DROP_PERCENT = 5
    watch = WatchFactory()
    duffel.offers_for = priced("400.00", "390.00", "378.00")
    assert check(watch) == "recorded"  # baseline 400
    assert check(watch, minutes_later=20) == "recorded"  # -2.5 %: not enough
    assert check(watch, minutes_later=40) == "notified"  # -5.5 % from 400
    watch.refresh_from_db()
    assert watch.reference_price == Decimal("378.00") and watch.last_notified_at
    (email,) = mail.outbox
    assert email.to == [watch.owner.email]
    assert "378.00 GBP" in email.subject and "LHR → JFK" in email.subject
    alert = Alert.objects.get(kind=Alert.Kind.PRICE_DROP)
    assert alert.severity == "info" and f"#{watch.pk}" in alert.message
    assert list(PricePoint.objects.filter(watch=watch).values_list("notified", flat=True)) == [False, False, True]


def test_the_price_drop_email_goes_through_the_gateway_as_a_provider_call(duffel):
    watch = WatchFactory(target_price=Decimal("400.00"))
    duffel.offers_for = priced("380.00")
    assert check(watch) == "notified"
    (email,) = mail.outbox
    assert email.to == [watch.owner.email] and "380.00 GBP" in email.subject
    sent = ProviderCall.objects.get(provider="email")
    assert (sent.operation, sent.outcome, sent.units) == ("mail.send", "ok", {"messages": 1})
    assert (sent.owner_id, sent.related_type, sent.related_id) == (watch.owner_id, "travel.pricewatch", str(watch.pk))


def test_a_redelivered_notice_task_sends_nothing_twice(duffel):
    from travel.tasks import watch_notify

    watch = WatchFactory(target_price=Decimal("400.00"))
    duffel.offers_for = priced("380.00")
    assert check(watch) == "notified"
    point = watch.points.get()
    assert point.emailed_at is not None
    watch_notify.apply(args=[point.pk])  # the broker delivers the same message again
    assert len(mail.outbox) == 1 and ProviderCall.objects.filter(provider="email").count() == 1


def test_a_mail_server_hiccup_is_retried_and_every_attempt_logged(duffel, flaky_mail):
    flaky_mail.append(smtplib.SMTPServerDisconnected("Connection unexpectedly closed"))
    watch = WatchFactory(target_price=Decimal("400.00"))
    duffel.offers_for = priced("380.00")
    assert check(watch) == "notified"
    assert len(mail.outbox) == 1
    calls = ProviderCall.objects.filter(provider="email").order_by("attempt")
    assert [(c.outcome, c.attempt) for c in calls] == [("error", 1), ("ok", 2)]


def test_an_email_that_keeps_failing_is_kept_on_the_watch_and_alerted_not_lost(duffel, flaky_mail):
    flaky_mail.extend(smtplib.SMTPResponseException(451, b"try again later") for _ in range(3))
    watch = WatchFactory(target_price=Decimal("400.00"))
    duffel.offers_for = priced("380.00")
    assert check(watch) == "notified"
    assert mail.outbox == [] and ProviderCall.objects.filter(provider="email", outcome="error").count() == 3
    watch.refresh_from_db()
    assert watch.last_price == Decimal("380.00") and watch.points.get().notified
    assert watch.last_error.startswith("price-drop email not sent:") and "try again later" in watch.last_error
    assert Alert.objects.filter(kind=Alert.Kind.TASK_FAILED, message__contains="travel.watch_notify").exists()
    assert Alert.objects.filter(kind=Alert.Kind.PRICE_DROP).count() == 1


def test_a_rise_never_notifies(duffel):
    watch = WatchFactory()
    duffel.offers_for = priced("400.00", "450.00", "520.00")
    assert [check(watch, minutes_later=20 * i) for i in range(3)] == ["recorded"] * 3
    assert mail.outbox == [] and not Alert.objects.filter(kind=Alert.Kind.PRICE_DROP).exists()
    watch.refresh_from_db()
    assert watch.last_price == Decimal("520.00") and watch.reference_price == Decimal("400.00")


def test_a_target_price_notifies_below_it_and_again_only_lower_or_after_a_new_crossing(duffel):
    watch = WatchFactory(target_price=Decimal("400.00"))
    duffel.offers_for = priced("450.00", "380.00", "370.00", "390.00", "450.00", "390.00")
    outcomes = [check(watch, minutes_later=20 * i) for i in range(6)]
    assert outcomes == ["recorded", "notified", "notified", "recorded", "recorded", "notified"]
    assert len(mail.outbox) == 3
    assert "below your target of 400.00 GBP" in mail.outbox[0].body


def test_an_owner_without_email_still_gets_the_alert(duffel):
    watch = WatchFactory(target_price=Decimal("500.00"), owner__email="")
    duffel.offers_for = priced("450.00")
    assert check(watch) == "notified"
    assert mail.outbox == [] and Alert.objects.filter(kind=Alert.Kind.PRICE_DROP).count() == 1


def test_a_date_range_searches_one_date_per_check_and_tracks_the_cheapest(duffel):
    start = dt.date.today() + dt.timedelta(days=20)
    watch = WatchFactory(departure_date=start, departure_date_to=start + dt.timedelta(days=2), nights=7)
    duffel.offers_for = priced("500.00", "420.00", "460.00")
    for i in range(3):
        check(watch, minutes_later=20 * i)
    sent = [c[3]["data"]["slices"] for c in duffel.calls("POST", "/air/offer_requests")]
    assert [s[0]["departure_date"] for s in sent] == [(start + dt.timedelta(days=i)).isoformat() for i in range(3)]
    assert [s[1]["departure_date"] for s in sent] == [(start + dt.timedelta(days=7 + i)).isoformat() for i in range(3)]
    watch.refresh_from_db()
    assert watch.last_price == Decimal("420.00")


def test_a_watch_stops_after_its_departure_date(duffel):
    watch = WatchFactory(departure_date=dt.date.today() + dt.timedelta(days=2))
    with time_machine.travel(timezone.now() + dt.timedelta(days=3)):
        services.watch_check_due()
        assert services.watch_check(watch_id=watch.pk) == "skipped"
    watch.refresh_from_db()
    assert watch.status == "expired"
    assert duffel.requests == []


def test_the_sweeper_enqueues_due_watches_within_the_hourly_budget(
    duffel, settings, eager, django_capture_on_commit_callbacks
):
    settings.TRAVEL_WATCH_MAX_SEARCHES_PER_HOUR = 120  # two a minute
    past = timezone.now() - dt.timedelta(minutes=1)
    watches = [WatchFactory(next_check_at=past - dt.timedelta(seconds=i)) for i in range(5)]
    WatchFactory(next_check_at=timezone.now() + dt.timedelta(hours=1))  # not due
    WatchFactory(next_check_at=past, status="paused")  # not active
    with django_capture_on_commit_callbacks(execute=True):
        assert services.watch_check_due() == 2
    checked = set(PricePoint.objects.values_list("watch_id", flat=True))
    assert checked == {watches[4].pk, watches[3].pk}  # the most overdue first
    assert len(duffel.calls("POST", "/air/offer_requests")) == 1  # same route and date: the cache served the second
    with django_capture_on_commit_callbacks(execute=True):
        assert services.watch_check_due() == 2  # the rest wait for the next minute, none is skipped


def test_checks_are_spread_over_the_interval(settings):
    settings.TRAVEL_WATCH_INTERVAL_MINUTES = 360
    now = timezone.now()
    assert len({slot_seconds(pk) for pk in range(1, 1001)}) > 900
    # 60 watches over the whole six hours (in at least 20 of its 24 quarter hours), not within one hour.
    quarters = {int((next_check_after(pk, now) - now).total_seconds() // 900) % 24 for pk in range(1, 61)}
    assert len(quarters) >= 20
    for pk in range(1, 50):
        when = next_check_after(pk, now)
        assert dt.timedelta(minutes=270) < when - now <= dt.timedelta(minutes=630)


@pytest.mark.parametrize("minutes", [30, 90, 360])
def test_one_watchs_checks_are_one_interval_apart(settings, minutes):
    """A check's next comes an interval after it, late or not; the slot in the hour rounded 90 and 30 down to 60."""
    settings.TRAVEL_WATCH_INTERVAL_MINUTES = minutes
    interval = dt.timedelta(minutes=minutes)
    for pk in (1, 7, 4242):
        first = next_check_after(pk, timezone.now())
        for late in (dt.timedelta(0), dt.timedelta(seconds=50), interval / 5):
            assert next_check_after(pk, first + late) - first == interval
        # Resumed: the next slot from now, within one interval, never at once.
        resumed = next_check_after(pk, first + interval / 4, at_least=dt.timedelta(0))
        assert resumed == first + interval


def test_the_history_is_a_chart_ready_series(user_client, user, duffel):
    start = dt.date.today() + dt.timedelta(days=20)
    watch = WatchFactory(
        owner=user, departure_date=start, departure_date_to=start + dt.timedelta(days=1), target_price=Decimal("300")
    )
    duffel.offers_for = priced("500.00", "420.00", "410.00")
    for i in range(3):
        check(watch, minutes_later=20 * i)
    r = user_client.get(f"/api/v1/travel/watches/{watch.pk}/")
    assert r.status_code == 200
    history = r.json()["history"]
    assert history["currency"] == "GBP" and history["target_price"] == "300.00"
    assert [s["departure_date"] for s in history["series"]] == [
        start.isoformat(),
        (start + dt.timedelta(days=1)).isoformat(),
    ]
    assert [p["price"] for p in history["series"][0]["points"]] == ["500.00", "410.00"]
    assert [p["price"] for p in history["best"]] == ["500.00", "420.00", "410.00"]
    assert all(p["t"] for p in history["best"])


def test_the_best_price_series_leaves_out_dates_that_have_departed(user_client, user, duffel):
    start = dt.date.today() + dt.timedelta(days=2)
    watch = WatchFactory(owner=user, departure_date=start, departure_date_to=start + dt.timedelta(days=3))
    duffel.offers_for = priced("100.00", "400.00", "410.00")
    check(watch)  # the first date: cheap
    check(watch, minutes_later=20)  # the second
    noon_next_day = dt.datetime.combine(start + dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)
    with time_machine.travel(noon_next_day):  # the first date has departed, the second is today
        assert services.watch_check(watch_id=watch.pk) == "recorded"
        data = user_client.get(f"/api/v1/travel/watches/{watch.pk}/").json()
    assert data["last_price"] == "400.00"
    assert [p["price"] for p in data["history"]["best"]] == ["100.00", "100.00", "400.00"]
    assert data["history"]["series"][0]["points"][0]["price"] == "100.00"  # its own series keeps it


def by_date(prices):
    """The fake answers each departure date (ISO) at its price in `prices`, read at each search."""

    def offers(slices):
        total = prices[slices[0][2]]
        return [make_offer(slices, offer_id=f"off_{total}", total=total, airline="BA")]

    return offers


def _range_from(days, length):
    start = dt.date.today() + dt.timedelta(days=days)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(length)]


def _noon_on(iso):
    """At noon UTC on that day, the day before it has departed at LHR."""
    return dt.datetime.combine(dt.date.fromisoformat(iso), dt.time(12), tzinfo=dt.UTC)


def test_an_any_drop_watch_measures_from_dates_still_ahead_not_one_that_departed(duffel, settings):
    settings.TRAVEL_WATCH_DROP_PERCENT = 5
    d0, d1, d2 = _range_from(2, 3)
    watch = WatchFactory(departure_date=d0, departure_date_to=d2)
    prices = {d0: "300.00", d1: "400.00", d2: "420.00"}
    duffel.offers_for = by_date(prices)
    assert [check(watch, minutes_later=20 * i) for i in range(3)] == ["recorded"] * 3  # baseline 300 (d0)
    prices[d1] = "370.00"  # d0 has departed; the best date still ahead, d1, falls from 400 to 370 (-7.5 %)
    with time_machine.travel(_noon_on(d1)), TestCase.captureOnCommitCallbacks(execute=True):
        assert services.watch_check(watch_id=watch.pk) == "notified"
    watch.refresh_from_db()
    assert watch.last_price == Decimal("370.00") and watch.reference_price == Decimal("370.00")
    (email,) = mail.outbox
    assert "370.00 GBP" in email.subject


def test_the_price_last_told_counts_only_the_dates_still_ahead_once_its_own_date_departs(duffel, settings):
    settings.TRAVEL_WATCH_DROP_PERCENT = 5
    d0, d1, d2 = _range_from(2, 3)
    watch = WatchFactory(departure_date=d0, departure_date_to=d2)
    prices = {d0: "300.00", d1: "400.00", d2: "420.00"}
    duffel.offers_for = by_date(prices)
    assert [check(watch, minutes_later=20 * i) for i in range(3)] == ["recorded"] * 3
    prices[d0] = "280.00"
    assert check(watch, minutes_later=60) == "notified"  # told 280 (d0), while d1 was 400 and d2 420
    # d0 departs, and the next date searched, d2, is at 370: 7.5 % below the best of the dates left when the
    # owner was told (d1's 400), though above the 280 told for d0.
    prices[d2] = "370.00"
    with time_machine.travel(_noon_on(d1)), TestCase.captureOnCommitCallbacks(execute=True):
        assert services.watch_check(watch_id=watch.pk) == "notified"
    assert len(mail.outbox) == 2 and "370.00 GBP" in mail.outbox[1].subject


def test_an_any_drop_watch_does_not_call_a_new_dates_first_price_a_drop_from_a_departed_one(duffel, settings):
    settings.TRAVEL_WATCH_DROP_PERCENT = 5
    d0, d1 = _range_from(2, 2)
    watch = WatchFactory(departure_date=d0, departure_date_to=d1)
    duffel.offers_for = by_date({d0: "500.00", d1: "460.00"})
    assert check(watch) == "recorded"  # baseline 500, the price of d0
    with time_machine.travel(_noon_on(d1)), TestCase.captureOnCommitCallbacks(execute=True):
        # d0 has departed: 460 is the first price seen for the dates left, not 8 % down from one.
        assert services.watch_check(watch_id=watch.pk) == "recorded"
    watch.refresh_from_db()
    assert watch.last_price == Decimal("460.00") and watch.reference_price == Decimal("460.00")
    assert mail.outbox == [] and not Alert.objects.filter(kind=Alert.Kind.PRICE_DROP).exists()


def test_a_target_watch_tells_a_price_below_target_of_a_date_ahead_once_the_told_date_departed(duffel):
    d0, d1 = _range_from(2, 2)
    watch = WatchFactory(departure_date=d0, departure_date_to=d1, target_price=Decimal("400.00"))
    duffel.offers_for = by_date({d0: "350.00", d1: "380.00"})
    assert check(watch) == "notified"  # 350 on d0
    assert check(watch, minutes_later=20) == "recorded"  # 380 on d1: the watch's price is still 350
    with time_machine.travel(_noon_on(d1)), TestCase.captureOnCommitCallbacks(execute=True):
        # d0 has departed: 380 on d1 is below the target and nobody was told about it.
        assert services.watch_check(watch_id=watch.pk) == "notified"
    assert len(mail.outbox) == 2 and "380.00 GBP" in mail.outbox[1].subject


def test_watches_are_private_to_their_owner(user_client, other_user, user, duffel):
    mine, theirs = WatchFactory(owner=user), WatchFactory(owner=other_user)
    assert [w["id"] for w in user_client.get("/api/v1/travel/watches/").json()["results"]] == [mine.pk]
    assert user_client.get(f"/api/v1/travel/watches/{theirs.pk}/").status_code == 404
    assert user_client.delete(f"/api/v1/travel/watches/{theirs.pk}/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "active"


def test_a_cancelled_watch_is_never_searched_again(user_client, user, duffel):
    watch = WatchFactory(owner=user)
    assert user_client.delete(f"/api/v1/travel/watches/{watch.pk}/").status_code == 204
    watch.refresh_from_db()
    assert watch.status == "cancelled"
    assert services.watch_check(watch_id=watch.pk) == "skipped"
    assert duffel.requests == []


@pytest.mark.parametrize(
    "body,field",
    [
        ({"origin": "LHR", "destination": "XQZ", "departure_date": day(30)}, "destination"),
        ({"origin": "LHR", "destination": "JFK", "departure_date": day(-2)}, "departure_date"),
        (
            {"origin": "LHR", "destination": "JFK", "departure_date": day(30), "departure_date_to": day(60)},
            "departure_date_to",
        ),
        (
            {
                "origin": "LHR",
                "destination": "JFK",
                "departure_date": day(30),
                "departure_date_to": day(32),
                "return_date": day(40),
            },
            "return_date",
        ),
        ({"origin": "LHR", "destination": "JFK", "departure_date": day(30), "nights": 3}, "nights"),
        ({"origin": "LHR", "destination": "JFK", "departure_date": day(30), "return_date": day(20)}, "return_date"),
        (
            {
                "origin": "LHR",
                "destination": "JFK",
                "departure_date": day(30),
                "target_price": "300",
                "drop_percent": "10",
            },
            "drop_percent",
        ),
        (
            {
                "origin": "LHR",
                "destination": "JFK",
                "departure_date": day(30),
                "passengers": {"adults": 1, "infants": 2},
            },
            "passengers.infants",
        ),
        (
            {
                "origin": "LHR",
                "destination": "JFK",
                "departure_date": day(30),
                "include_airlines": ["BA"],
                "exclude_airlines": ["ba"],
            },
            "exclude_airlines",
        ),
    ],
)
def test_a_bad_watch_is_a_400_naming_the_field(user_client, duffel, body, field):
    r = user_client.post("/api/v1/travel/watches/", body, format="json")
    assert r.status_code == 400 and field in r.json()["fields"], r.json()
    assert not PriceWatch.objects.exists() and duffel.requests == []


def test_a_user_has_a_limited_number_of_watches(user_client, user, duffel, settings):
    settings.TRAVEL_WATCH_MAX_PER_USER = 1
    WatchFactory(owner=user)
    r = user_client.post(
        "/api/v1/travel/watches/", {"origin": "LHR", "destination": "JFK", "departure_date": day(30)}, format="json"
    )
    assert r.status_code == 409 and r.json()["error"] == "too_many_watches"


def test_a_check_that_gives_up_keeps_the_reason_and_waits_for_its_next_slot(duffel, eager):
    from travel.tasks import watch_check

    watch = WatchFactory()
    duffel.fail_next(
        400,
        {
            "errors": [{"type": "invalid_request_error", "code": "bad", "title": "Bad", "message": "nope"}],
            "meta": {"status": 400, "request_id": "r"},
        },
    )
    watch_check.apply(args=[watch.pk])
    watch.refresh_from_db()
    assert "nope" in watch.last_error
    assert watch.next_check_at > timezone.now() + dt.timedelta(minutes=200)
    assert Alert.objects.filter(kind=Alert.Kind.TASK_FAILED).exists()


def test_a_date_that_keeps_failing_does_not_stop_the_rest_of_a_range_being_watched(duffel, eager):
    from travel.tasks import watch_check

    start = dt.date.today() + dt.timedelta(days=20)
    watch = WatchFactory(departure_date=start, departure_date_to=start + dt.timedelta(days=2))
    duffel.fail_next(
        400,
        {
            "errors": [{"type": "invalid_request_error", "code": "bad", "title": "Bad", "message": "nope"}],
            "meta": {"status": 400, "request_id": "r"},
        },
    )
    watch_check.apply(args=[watch.pk])  # the first date fails for good: the task gives up
    duffel.offers_for = priced("500.00")
    assert check(watch, minutes_later=20) == "recorded"
    sent = [c[3]["data"]["slices"][0]["departure_date"] for c in duffel.calls("POST", "/air/offer_requests")]
    assert sent == [start.isoformat(), (start + dt.timedelta(days=1)).isoformat()]


# The watch state machine's full matrix (every listed move applied, every other refused) is generated by
# tests/contracts/test_state_machines.py from PriceWatch.TRANSITIONS and tests/travel/factories.py.


def test_an_expired_or_cancelled_watch_never_comes_back():
    assert PriceWatch.TRANSITIONS["expired"] == set() and PriceWatch.TRANSITIONS["cancelled"] == set()
    watch = WatchFactory(status="expired")
    with pytest.raises(IllegalTransition):
        transition(PriceWatch, watch.pk, "active", strict=True)


def test_the_owner_pauses_and_resumes_a_watch(user_client, user, duffel):
    watch = WatchFactory(owner=user)
    r = user_client.post(f"/api/v1/travel/watches/{watch.pk}/pause/")
    assert r.status_code == 200 and r.json()["status"] == "paused"
    assert services.watch_check(watch_id=watch.pk) == "skipped"
    r = user_client.post(f"/api/v1/travel/watches/{watch.pk}/resume/")
    assert r.status_code == 200 and r.json()["status"] == "active"
    watch.refresh_from_db()
    # Back on its slot, within one interval, not at once.
    assert timezone.now() < watch.next_check_at <= timezone.now() + dt.timedelta(minutes=360, seconds=5)
    assert duffel.requests == []


def test_a_cancelled_watch_cannot_resume_and_another_users_is_404(user_client, user, other_user, duffel):
    watch = WatchFactory(owner=user, status="cancelled")
    r = user_client.post(f"/api/v1/travel/watches/{watch.pk}/resume/")
    assert r.status_code == 409 and r.json()["error"] == "illegal_transition"
    theirs = WatchFactory(owner=other_user)
    assert user_client.post(f"/api/v1/travel/watches/{theirs.pk}/pause/").status_code == 404


def test_staff_pause_watches_from_admin_through_the_state_machine(client, staff_user):
    active, cancelled = WatchFactory(), WatchFactory(status="cancelled")
    client.force_login(staff_user)
    r = client.post(
        "/admin/travel/pricewatch/",
        {"action": "pause", "_selected_action": [active.pk, cancelled.pk]},
        follow=True,
    )
    assert r.status_code == 200
    active.refresh_from_db(), cancelled.refresh_from_db()
    assert (active.status, cancelled.status) == ("paused", "cancelled")
    assert "1 watch(es) paused" in r.content.decode()
    assert "cannot become paused" in r.content.decode()
