"""OrjsonRenderer writes what DRF's JSONRenderer writes, faster, and copies pre-written JSON in."""

import datetime as dt
import uuid
from decimal import Decimal

import orjson
from django.utils.translation import gettext_lazy
from rest_framework.exceptions import ErrorDetail
from rest_framework.renderers import JSONRenderer

from integrations.api.renderers import OrjsonRenderer

PAYLOAD = {
    "name": "Aer Lingus – Dublin\u2028Cork\u2029",
    "count": 3,
    "ratio": 0.125,
    "ok": True,
    "nothing": None,
    "items": [{"a": [1, 2, {"b": "ü"}]}, (4, 5)],
    "amount": Decimal("12.50"),
    "at": dt.datetime(2026, 12, 3, 9, 30, 1, 123456, tzinfo=dt.UTC),
    "day": dt.date(2026, 12, 3),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "lazy": gettext_lazy("This field is required."),
    "error": ErrorDetail("Bad value.", code="invalid"),
}


def test_it_writes_the_bytes_drf_writes():
    assert OrjsonRenderer().render(PAYLOAD) == JSONRenderer().render(PAYLOAD)


def test_line_and_paragraph_separators_are_escaped_as_drf_does():
    body = OrjsonRenderer().render({"s": "a\u2028b\u2029c"})
    assert body == b'{"s":"a\\u2028b\\u2029c"}'


def test_a_fragment_is_copied_in_as_it_is():
    body = OrjsonRenderer().render({"offers": [orjson.Fragment(b'{"id":"off_1","name":"x\xe2\x80\xa8y"}')]})
    assert body == b'{"offers":[{"id":"off_1","name":"x\\u2028y"}]}'


def test_an_indented_answer_is_drfs_with_fragments_expanded():
    data = {"offers": [orjson.Fragment(b'{"id":"off_1"}')], "amount": Decimal("1.50")}
    body = OrjsonRenderer().render(data, "application/json; indent=4")
    expected = {"offers": [{"id": "off_1"}], "amount": Decimal("1.50")}
    assert body == JSONRenderer().render(expected, "application/json; indent=4")
    assert body.startswith(b'{\n    "offers"')


def test_nothing_is_an_empty_body():
    assert OrjsonRenderer().render(None) == b""
