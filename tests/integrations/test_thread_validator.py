"""ThreadValidator: one bound serializer per thread, reused, answering each call as a new instance would."""

import threading

from rest_framework import serializers

from integrations.api.strict import StrictSerializer, ThreadValidator


class _Trip(StrictSerializer):
    name = serializers.CharField(max_length=5)
    tags = serializers.ListField(child=serializers.CharField(), default=list)
    seats = serializers.IntegerField(min_value=1, default=1)

    def validate(self, data):
        gate = getattr(_Trip, "gate", None)
        if gate is not None:
            gate.wait(timeout=5)
        data["raw_keys"] = sorted(self.initial_data)  # what a validate method may read of the body
        return data


def test_errors_and_data_of_one_call_never_reach_the_next():
    trips = ThreadValidator(_Trip)
    data, errors = trips.validate({"name": "far too long", "seats": 0})
    assert data is None and set(errors) == {"name", "seats"}

    data, errors = trips.validate({"name": "ok", "tags": ["a"], "seats": 3})
    assert errors == {} and data == {"name": "ok", "tags": ["a"], "seats": 3, "raw_keys": ["name", "seats", "tags"]}

    data["tags"].append("mutated by the caller")
    again, errors = trips.validate({"name": "ok2"})
    assert errors == {} and again == {"name": "ok2", "tags": [], "seats": 1, "raw_keys": ["name"]}

    _, errors = trips.validate({"name": "x", "seats": 0})
    assert set(errors) == {"seats"}  # not the first call's `name`
    _, errors = trips.validate({"name": "x", "typo": 1})
    assert set(errors) == {"typo"}  # still strict


def test_threads_validating_at_once_each_get_their_own_answer():
    trips = ThreadValidator(_Trip)
    trips.validate({"name": "warm"})  # this thread's instance exists already; the others make their own
    _Trip.gate = threading.Barrier(2)
    answers = {}

    def run(name):
        answers[name] = trips.validate({"name": name, "tags": [name]})

    try:
        threads = [threading.Thread(target=run, args=(n,)) for n in ("one", "two")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        del _Trip.gate
    # Both were inside validate at once (the barrier): a shared instance would have mixed their bodies.
    assert answers["one"] == ({"name": "one", "tags": ["one"], "seats": 1, "raw_keys": ["name", "tags"]}, {})
    assert answers["two"] == ({"name": "two", "tags": ["two"], "seats": 1, "raw_keys": ["name", "tags"]}, {})
