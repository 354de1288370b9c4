"""Searching flights through the API: what Duffel is sent, what the client gets back."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from rest_framework.renderers import JSONRenderer

from integrations.models import ProviderCall

from .conftest import day, one_way, search
from .duffel_fake import carrier, default_offers, error_body, make_offer

pytestmark = pytest.mark.django_db


def test_a_one_way_search_sends_an_offer_request_with_version_and_token(user_client, duffel):
    r = search(
        user_client,
        one_way(passengers={"adults": 2, "children": [7], "infants": 1}, cabin_class="business", max_connections=1),
    )
    assert r.status_code == 200, r.json()
    (method, path, query, body, headers) = duffel.calls("POST", "/air/offer_requests")[0]
    assert query["return_offers"] == "true"
    assert headers["duffel-version"] == "v2"
    assert headers["authorization"] == "Bearer duffel_test_fake_token"
    assert body["data"] == {
        "slices": [{"origin": "LHR", "destination": "JFK", "departure_date": day(30)}],
        "passengers": [{"type": "adult"}, {"type": "adult"}, {"age": 7}, {"type": "infant_without_seat"}],
        "cabin_class": "business",
        "max_connections": 1,
    }


def test_offers_come_back_normalised_cheapest_first(user_client, duffel):
    data = search(user_client, one_way()).json()
    assert data["provider"] == "duffel"
    assert data["offer_count"] == 4
    assert [o["id"] for o in data["offers"]] == ["off_0000AA", "off_0000BA", "off_0000VS", "off_0000AF"]
    ba = data["offers"][1]
    assert ba["total_amount"] == "450.00" and ba["total_currency"] == "GBP"
    assert ba["base_amount"] == "315.00" and ba["tax_amount"] == "135.00"
    assert ba["owner"] == {"iata_code": "BA", "name": "British Airways"}
    assert ba["refundable"] is True and ba["changeable"] is False
    assert ba["emissions_kg"] == "460"
    assert ba["expires_at"].endswith("Z")
    (sl,) = ba["slices"]
    assert (sl["origin"], sl["destination"], sl["stops"], sl["duration_minutes"]) == ("LHR", "JFK", 0, 420)
    (seg,) = sl["segments"]
    assert seg["flight_number"] == "BA117"
    assert seg["aircraft"] == "Boeing 777-300ER"
    assert seg["departing_at"] == f"{day(30)}T09:30:00"
    assert seg["origin_time_zone"] == "Europe/London" and seg["destination_time_zone"] == "America/New_York"
    assert seg["duration_minutes"] == 420
    assert {"type": "checked", "quantity": 1} in seg["baggage"]
    aa = data["offers"][0]
    assert aa["slices"][0]["stops"] == 1
    assert [s["destination"] for s in aa["slices"][0]["segments"]] == ["BOS", "JFK"]


def test_a_multi_city_search_normalises_every_slice_in_order(user_client, duffel):
    body = {
        "slices": [
            {"origin": "LHR", "destination": "JFK", "departure_date": day(20)},
            {
                "origin": "JFK",
                "destination": "MAD",
                "departure_date": day(25),
                "departure_time_from": "08:00",
                "departure_time_to": "12:00",
            },
            {"origin": "MAD", "destination": "LHR", "departure_date": day(31)},
        ]
    }
    data = search(user_client, body).json()
    sent = duffel.calls("POST", "/air/offer_requests")[0][3]["data"]["slices"]
    assert sent[1]["departure_time"] == {"from": "08:00", "to": "12:00"}
    offer = data["offers"][0]
    assert [(s["origin"], s["destination"]) for s in offer["slices"]] == [
        ("LHR", "JFK"),
        ("JFK", "MAD"),
        ("MAD", "LHR"),
    ]
    assert [s["segments"][0]["departing_at"][:10] for s in offer["slices"]] == [day(20), day(25), day(31)]
    assert offer["slices"][1]["segments"][0]["origin_time_zone"] == "America/New_York"
    assert all(s["stops"] == 1 for s in offer["slices"])  # AA connects in Boston on each slice


def test_every_search_is_a_provider_call_priced_per_search(user_client, user, duffel, settings):
    settings.PROVIDER_PRICES = {
        **settings.PROVIDER_PRICES,
        "duffel": {"offer_request.create": {"per_call": "0.005"}, "*": {"per_call": "0"}},
    }
    search(user_client, one_way())
    call = ProviderCall.objects.get(provider="duffel")
    assert call.operation == "offer_request.create"
    assert call.owner_id == user.pk
    assert call.outcome == "ok" and call.http_status == 201
    assert call.cost_usd == Decimal("0.005")
    assert call.units == {"offers": 4}
    assert call.provider_request_id.startswith("FZW0H3HdJwKk5HM")


@pytest.mark.parametrize(
    "filters,expected",
    [
        ({"include_airlines": ["BA", "VS"]}, ["off_0000BA", "off_0000VS"]),
        ({"exclude_airlines": ["aa"]}, ["off_0000BA", "off_0000VS", "off_0000AF"]),
        ({"max_price": "500"}, ["off_0000AA", "off_0000BA"]),
        ({"sort": "duration"}, ["off_0000BA", "off_0000VS", "off_0000AA", "off_0000AF"]),
        ({"sort": "departure"}, ["off_0000VS", "off_0000BA", "off_0000AA", "off_0000AF"]),
        ({"include_airlines": ["AF"], "max_price": "600"}, []),
    ],
)
def test_filters_and_sorts_apply_to_the_offers(user_client, duffel, filters, expected):
    data = search(user_client, one_way(**filters)).json()
    assert [o["id"] for o in data["offers"]] == expected
    assert data["offer_count"] == len(expected)


def test_an_offer_whose_durations_duffel_sends_as_null_is_timed_by_its_local_clocks_not_sorted_first(
    user_client, duffel
):
    """Duffel's slice and segment `duration` are nullable: the offer still sorts by how long it takes."""

    def without_durations(slices):
        offers = default_offers(slices)
        vs = next(o for o in offers if o["id"] == "off_0000VS")  # LHR 06:15 to JFK, 430 minutes
        leaves = datetime.fromisoformat(f"{day(30)}T06:15:00").replace(tzinfo=ZoneInfo("Europe/London"))
        lands = (leaves + timedelta(minutes=430)).astimezone(ZoneInfo("America/New_York"))
        vs["slices"][0]["duration"] = None
        vs["slices"][0]["segments"][0].update(duration=None, arriving_at=lands.strftime("%Y-%m-%dT%H:%M:%S"))
        return offers

    duffel.offers_for = without_durations
    data = search(user_client, one_way(sort="duration")).json()
    assert [o["id"] for o in data["offers"]] == ["off_0000BA", "off_0000VS", "off_0000AA", "off_0000AF"]
    vs = data["offers"][1]["slices"][0]
    assert vs["duration_minutes"] == 430 and vs["segments"][0]["duration_minutes"] == 430


# No zone, or one ZoneInfo cannot read: a folder of the tz database raises IsADirectoryError (an OSError).
@pytest.mark.parametrize("zone", [None, "Europe", "Not/AZone"])
def test_an_offer_whose_duration_cannot_be_known_sorts_after_the_rest(user_client, duffel, zone):
    def unknown(slices):
        offers = default_offers(slices)
        offers[1]["slices"][0]["duration"] = None  # BA, the fastest; no time zones to count with either
        for segment in offers[1]["slices"][0]["segments"]:
            segment["duration"] = None
            segment["origin"]["time_zone"] = segment["destination"]["time_zone"] = zone
        return offers

    duffel.offers_for = unknown
    data = search(user_client, one_way(sort="duration")).json()
    assert [o["id"] for o in data["offers"]] == ["off_0000VS", "off_0000AA", "off_0000AF", "off_0000BA"]
    assert data["offers"][-1]["slices"][0]["duration_minutes"] is None


def test_an_excluded_airline_also_removes_offers_it_only_operates(user_client, duffel):
    def codeshare(slices):
        offer = make_offer(slices, offer_id="off_0000CS", total="300", airline="BA")
        offer["slices"][0]["segments"][0]["operating_carrier"]["iata_code"] = "AA"
        return [offer, make_offer(slices, offer_id="off_0000VS", total="400", airline="VS")]

    duffel.offers_for = codeshare
    data = search(user_client, one_way(exclude_airlines=["AA"])).json()
    assert [o["id"] for o in data["offers"]] == ["off_0000VS"]


def _codeshares(slices):
    """AA sells both; the first's one flight is an AA flight number flown by BA, the second's second flight is AA's."""
    flown_by_ba = make_offer(slices, offer_id="off_0000CS", total="300", airline="AA")
    flown_by_ba["slices"][0]["segments"][0]["operating_carrier"] = carrier("BA")
    partly = make_offer(slices, offer_id="off_0000CX", total="320", airline="AA", via="BOS")
    partly["slices"][0]["segments"][0]["operating_carrier"] = carrier("BA")
    return [flown_by_ba, partly, make_offer(slices, offer_id="off_0000VS", total="400", airline="VS")]


@pytest.mark.parametrize(
    "filters,expected",
    [
        # Every flight of the first is sold or flown by BA; the second's AA-flown leg is not.
        ({"include_airlines": ["BA"]}, ["off_0000CS"]),
        ({"exclude_airlines": ["BA"]}, ["off_0000VS"]),
        # AA sells both codeshares (the offer's owner and each flight's marketing carrier).
        ({"include_airlines": ["AA"]}, ["off_0000CS", "off_0000CX"]),
        ({"exclude_airlines": ["AA"]}, ["off_0000VS"]),
        ({"include_airlines": ["VS", "BA"]}, ["off_0000CS", "off_0000VS"]),
    ],
)
def test_both_airline_filters_count_the_airline_that_sells_and_the_one_that_flies_each_flight(
    user_client, duffel, filters, expected
):
    duffel.offers_for = _codeshares
    data = search(user_client, one_way(**filters)).json()
    assert [o["id"] for o in data["offers"]] == expected


def test_a_watch_for_one_airline_prices_a_codeshare_it_flies(user, duffel):
    from tests.travel.factories import WatchFactory
    from travel import services

    duffel.offers_for = _codeshares
    watch = WatchFactory(owner=user, include_airlines=["BA"])
    assert services.watch_check(watch_id=watch.pk) == "recorded"
    point = watch.points.get()
    assert (point.offer_id, point.price, point.offer_count) == ("off_0000CS", Decimal("300.00"), 1)


def test_large_answers_are_paginated_with_a_cursor(user_client, duffel):
    first = search(user_client, one_way(limit=3)).json()
    assert [o["id"] for o in first["offers"]] == ["off_0000AA", "off_0000BA", "off_0000VS"]
    assert first["next"]
    r = user_client.get(f"/api/v1/travel/searches/{first['search_id']}/", {"cursor": first["next"]})
    assert r.status_code == 200
    assert [o["id"] for o in r.json()["offers"]] == ["off_0000AF"]
    assert r.json()["next"] is None
    assert len(duffel.calls("POST", "/air/offer_requests")) == 1


def test_a_later_page_keeps_the_first_pages_filters(user_client, duffel):
    first = search(user_client, one_way(limit=1, exclude_airlines=["AA"], sort="duration")).json()
    r = user_client.get(f"/api/v1/travel/searches/{first['search_id']}/", {"cursor": first["next"]})
    assert [o["id"] for o in r.json()["offers"]] == ["off_0000VS"]


def test_a_later_page_of_a_search_run_again_since_its_first_page_is_a_410(user_client, duffel):
    first = search(user_client, one_way(limit=2)).json()
    assert [o["id"] for o in first["offers"]] == ["off_0000AA", "off_0000BA"]
    # Someone runs the same search again (refresh, or a price watch's check): Duffel answers other offers.
    duffel.offers_for = lambda slices: [
        make_offer(slices, offer_id=f"off_NEW{i}", total=f"{300 + i}.00", airline="IB") for i in range(4)
    ]
    again = search(user_client, one_way(limit=2, refresh=True)).json()
    assert again["search_id"] == first["search_id"]
    r = user_client.get(f"/api/v1/travel/searches/{first['search_id']}/", {"cursor": first["next"]})
    assert r.status_code == 410, [o["id"] for o in r.json().get("offers", [])]
    assert r.json()["error"] == "search_expired"
    # The new answer's own cursor still pages through it.
    r = user_client.get(f"/api/v1/travel/searches/{again['search_id']}/", {"cursor": again["next"]})
    assert r.status_code == 200
    assert [o["id"] for o in r.json()["offers"]] == ["off_NEW2", "off_NEW3"]


def test_a_made_up_cursor_is_a_400_and_an_unknown_search_a_410(user_client, duffel):
    first = search(user_client, one_way(limit=1)).json()
    r = user_client.get(f"/api/v1/travel/searches/{first['search_id']}/", {"cursor": "not-a-cursor"})
    assert r.status_code == 400 and r.json()["field"] == "cursor"
    r = user_client.get(f"/api/v1/travel/searches/{'0' * 40}/", {"cursor": first["next"]})
    assert r.status_code == 410 and r.json()["error"] == "search_expired"
    r = user_client.get("/api/v1/travel/searches/not-an-id/", {"cursor": first["next"]})
    assert r.status_code == 404


def test_duffels_offer_pages_are_followed_with_after(user_client, duffel, settings):
    settings.DUFFEL_OFFERS_PAGE_SIZE = 2
    data = search(user_client, one_way()).json()
    assert data["offer_count"] == 4
    (create,) = duffel.calls("POST", "/air/offer_requests")
    assert create[2]["return_offers"] == "false"
    pages = duffel.calls("GET", "/air/offers")
    assert len(pages) == 2
    assert "after" not in pages[0][2] and pages[1][2]["after"]
    assert {p[2]["offer_request_id"] for p in pages} == {"orq_0000000000"}
    assert ProviderCall.objects.filter(provider="duffel", operation="offers.list").count() == 2


def test_without_a_token_the_search_is_503_not_configured(user_client, duffel, settings):
    search(user_client, one_way())  # cached while configured
    settings.DUFFEL_ACCESS_TOKEN = ""
    for r in (
        search(user_client, one_way()),
        user_client.get("/api/v1/travel/places/", {"q": "london"}),
        user_client.post(
            "/api/v1/travel/watches/", {"origin": "LHR", "destination": "JFK", "departure_date": day(30)}, format="json"
        ),
    ):
        assert r.status_code == 503
        assert r.json()["error"] == "provider_not_configured"
        assert r.json()["missing"] == ["DUFFEL_ACCESS_TOKEN"]
    assert ProviderCall.objects.count() == 1


def test_duffels_422_is_a_422_naming_its_field(user_client, duffel):
    duffel.fail_next(
        422,
        error_body(
            422,
            type_="validation_error",
            code="invalid_date",
            title="Invalid date",
            message="departure_date must be after today",
            field="departure_date",
        ),
    )
    r = search(user_client, one_way())
    assert r.status_code == 422
    assert r.json()["error"] == "search_rejected"
    assert r.json()["field"] == "departure_date"
    assert r.json()["provider_code"] == "invalid_date"
    call = ProviderCall.objects.get(provider="duffel")
    assert call.outcome == "error" and call.retryable is False and call.http_status == 422


def test_a_duffel_outage_is_a_502_with_nothing_cached(user_client, duffel):
    duffel.fail_next(
        503, error_body(503, type_="api_error", code="service_unavailable", title="Unavailable", message="Please retry")
    )
    r = search(user_client, one_way())
    assert r.status_code == 502 and r.json()["error"] == "provider_unavailable"
    assert search(user_client, one_way()).status_code == 200
    assert len(duffel.calls("POST", "/air/offer_requests")) == 2


def test_an_answer_of_the_wrong_shape_is_a_502_with_nothing_cached(user_client, duffel):
    # A 201 whose offer has an owner that is not an object: unreadable, not a crash and not an empty result.
    duffel.fail_next(
        201,
        {
            "data": {
                "id": "orq_0000x",
                "offers": [{"id": "off_x", "total_amount": "1.00", "total_currency": "GBP", "owner": "BA"}],
            }
        },
    )
    r = search(user_client, one_way())
    assert r.status_code == 502 and r.json()["error"] == "provider_unavailable"
    assert "could not be read" in r.json()["detail"]
    assert ProviderCall.objects.get(provider="duffel").outcome == "error"
    r = search(user_client, one_way())
    assert r.status_code == 200 and r.json()["cache"]["hit"] is False and r.json()["offer_count"] == 4


def test_an_offer_with_nulls_missing_parts_and_fields_the_hub_does_not_know_is_still_read(user_client, duffel):
    """Duffel's answer is decoded into typed structs of the fields the hub reads: what it leaves out, sends as
    null, adds later or types loosely (a flight number as a number) must not cost the offer."""

    def sparse(slices):
        offer = make_offer(slices, offer_id="off_sparse", total="250", airline="BA")
        offer["total_emissions_kg"] = None
        offer["conditions"] = {"refund_before_departure": None, "change_before_departure": {"allowed": True}}
        offer["brand_new_field"] = {"nested": [1, 2, {"deeper": None}]}
        segment = offer["slices"][0]["segments"][0]
        segment.update(aircraft=None, marketing_carrier_flight_number=117, stops=[{"id": "sto_1", "duration": "PT1H"}])
        del segment["operating_carrier"], segment["passengers"]
        return [offer]

    duffel.offers_for = sparse
    r = search(user_client, one_way())
    assert r.status_code == 200, r.json()
    offer = r.json()["offers"][0]
    assert offer["emissions_kg"] is None and offer["refundable"] is None and offer["changeable"] is True
    assert offer["conditions"]["change_before_departure"] == {
        "allowed": True,
        "penalty_amount": None,
        "penalty_currency": None,
    }
    segment = offer["slices"][0]["segments"][0]
    assert segment["flight_number"] == "BA117" and segment["aircraft"] is None
    assert segment["operating_carrier"] == {"iata_code": None, "name": None}
    assert segment["baggage"] == [] and segment["cabin_class"] is None
    assert offer["slices"][0]["stops"] == 1  # a direct flight with one technical stop
    assert "brand_new_field" not in offer


def test_a_rejected_token_is_a_permanent_error(user_client, duffel, settings):
    settings.DUFFEL_ACCESS_TOKEN = "duffel_test_wrong"
    r = search(user_client, one_way())
    assert r.status_code == 502 and r.json()["error"] == "provider_rejected"
    assert r.json()["provider_code"] == "access_token_not_found"


def test_searching_needs_a_login(api_client, duffel):
    assert search(api_client, one_way()).status_code == 401
    assert duffel.requests == []


class TestTheCallLogLeavesTheRequestPath:
    """A fresh search's ProviderCall row is written once the answer has gone out, not while the client waits."""

    @staticmethod
    def served_but_not_closed(client_for, user, body):
        """What a WSGI server holds after sending the answer and before closing it (which fires request_finished)."""
        from django.core.signals import request_finished, request_started
        from django.db import close_old_connections
        from django.test import RequestFactory
        from django.test.client import ClientHandler

        handler = ClientHandler(enforce_csrf_checks=False)
        handler.load_middleware()
        request = RequestFactory().post(
            "/api/v1/travel/searches/",
            body,
            content_type="application/json",
            headers={"Authorization": client_for(user)._credentials["HTTP_AUTHORIZATION"]},
        )
        # The test database lives in one transaction: keep Django from closing its connection.
        request_started.disconnect(close_old_connections)
        try:
            request_started.send(sender=ClientHandler, environ=request.environ)
        finally:
            request_started.connect(close_old_connections)
        response = handler.get_response(request)

        def close():
            request_finished.disconnect(close_old_connections)
            try:
                response.close()
            finally:
                request_finished.connect(close_old_connections)

        return response, close

    def test_the_row_is_written_when_the_server_closes_the_answer(self, client_for, user, duffel):
        import json

        response, close = self.served_but_not_closed(client_for, user, json.dumps(one_way()))
        assert response.status_code == 200
        assert json.loads(response.content)["offer_count"] == 4
        assert not ProviderCall.objects.filter(provider="duffel").exists()
        close()
        call = ProviderCall.objects.get(provider="duffel")
        assert call.operation == "offer_request.create" and call.outcome == "ok" and call.owner_id == user.pk
        assert call.request_id == response["X-Request-ID"]
        assert call.units == {"offers": 4}

    def test_a_refused_search_is_logged_before_the_answer(self, client_for, user, duffel):
        import json

        duffel.fail_next(
            500, error_body(500, type_="api_error", code="internal_server_error", title="Boom", message="Try again")
        )
        response, close = self.served_but_not_closed(client_for, user, json.dumps(one_way()))
        assert response.status_code == 502
        assert ProviderCall.objects.get(provider="duffel").outcome == "error"
        close()
        assert ProviderCall.objects.filter(provider="duffel").count() == 1

    def test_outside_a_request_the_row_is_written_at_once(self, user, duffel):
        from travel.providers import SearchQuery, SliceQuery, get_flight_provider

        get_flight_provider().search(SearchQuery(slices=(SliceQuery("LHR", "JFK", day(30)),)), owner=user)
        assert ProviderCall.objects.get(provider="duffel").outcome == "ok"


def _with_owner_name(offer, name):
    offer["owner"] = {**offer["owner"], "name": name}
    return offer


def test_the_answer_is_the_json_drf_would_write(user_client, duffel):
    # Names with non-ASCII letters and U+2028 (a line break to JavaScript, which DRF escapes).
    duffel.offers_for = lambda slices: [
        _with_owner_name(make_offer(slices, offer_id="off_1", total="100"), "Aér Lingus\u2028Regional")
    ]
    for _ in range(2):  # fresh, then from the cache
        r = search(user_client, one_way())
        assert r.status_code == 200
        assert r.content == JSONRenderer().render(r.json())
        assert b"A\xc3\xa9r Lingus\\u2028Regional" in r.content


def test_an_indented_answer_holds_the_same_offers(user_client, duffel):
    compact = search(user_client, one_way()).json()
    r = user_client.post("/api/v1/travel/searches/", one_way(), format="json", HTTP_ACCEPT="application/json; indent=4")
    assert r.status_code == 200 and r.content.startswith(b'{\n    "search_id"')
    assert r.json()["offers"] == compact["offers"]


def test_under_the_asgi_server_the_row_is_written_with_the_call_log_batch(user_client, user, duffel, monkeypatch):
    from integrations.gateway import batchlog

    writer = batchlog.CallLogWriter(interval=3600)  # the web worker's writer, told when to write
    monkeypatch.setattr(batchlog, "_writer", writer)
    resp = search(user_client, one_way())
    assert resp.status_code == 200
    assert not ProviderCall.objects.exists() and writer.pending() == 1
    writer.flush()
    call = ProviderCall.objects.get(provider="duffel")
    assert (call.owner_id, call.operation, call.outcome, call.http_status) == (
        user.pk,
        "offer_request.create",
        "ok",
        201,
    )
    assert call.request_id == resp["X-Request-ID"]
    assert writer.pending() == 0


def test_offers_are_built_outside_the_cyclic_garbage_collector(user, duffel):
    """A search's offers (Duffel's decoded answer and the hub's normalised offers) are trees of plain values:
    kept out of the cyclic collector, their hundreds of objects do not bring on a collection of the worker's
    whole heap in the middle of a search (bench_travel at 100 offers)."""
    import gc
    import json

    from travel.providers import SearchQuery, SliceQuery, get_flight_provider
    from travel.providers.duffel import _read_offer_request

    query = SearchQuery(slices=(SliceQuery("LHR", "JFK", day(30)),))
    result = get_flight_provider().search(query, owner=user)
    offer = result.offers[0]
    segment = offer.slices[0].segments[0]
    assert segment.baggage and offer.conditions  # parts with containers, which msgspec would otherwise track
    assert not any(gc.is_tracked(o) for o in (offer, offer.slices[0], segment, segment.baggage[0], offer.owner))
    slices = [("LHR", "JFK", day(30))]
    body = json.dumps({"data": {"id": "orq_1", "offers": [make_offer(slices, offer_id="off_1", total="250")]}})
    raw = _read_offer_request(body.encode()).data.offers[0]
    assert not any(gc.is_tracked(o) for o in (raw, raw.slices[0], raw.slices[0].segments[0]))
