"""Request bodies name only fields the API reads: an unknown one is a 400 naming it, never dropped in silence.

Without this, DRF ignores a key its serializer does not declare, and a typo
carries the request out with defaults the client never chose: a token asked
for with `ttl_days` lives the default 90 days, a search for
`"passengers": {"adult": 2}` prices one adult, a completion with `top_p` runs
without it. Like Stripe's API, the hub answers 400 instead, in the one error
shape, naming each unknown field (with the nearest real name when there is
one) beside any other invalid field, and does nothing.

A field the serializer knows but does not read (a read-only field such as
`id`, sent back as the client read it) is still accepted and ignored; so is a
browser form's CSRF token. Every serializer of the API derives from
StrictSerializer or StrictModelSerializer; only the query-string ones stay
lenient (`?format=`, a client's cache-busting parameter), and so does an
OAuth redirect relayed as it came (the provider adds parameters of its own).
The OpenAPI schema says the same: request bodies have `additionalProperties:
false`.
"""

import difflib
import threading
from collections.abc import Mapping

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers
from rest_framework.settings import api_settings

# Keys a client does not choose: the browsable API's HTML forms post Django's CSRF token.
FRAMEWORK_KEYS = frozenset({"csrfmiddlewaretoken"})


def unknown_fields(data, known):
    """{name: [message]} for each key of `data` that is not in `known` (a serializer's fields)."""
    if not isinstance(data, Mapping):
        return {}
    names = sorted(str(k) for k in data if k not in known and k not in FRAMEWORK_KEYS)
    if not names:
        return {}  # every request's path: nothing more to work out
    writable = sorted(name for name, field in known.items() if not getattr(field, "read_only", False))
    errors = {}
    for name in names:
        close = difflib.get_close_matches(name, writable, n=1, cutoff=0.6)
        if close:
            errors[name] = [f"Unknown field; did you mean `{close[0]}`?"]
        else:
            errors[name] = [f"Unknown field; this object takes: {', '.join(writable) or 'no fields'}."]
    return errors


class RejectUnknownFields:
    """Mixin for a serializer that validates input: unknown keys are errors, reported with the others."""

    def to_internal_value(self, data):
        unknown = unknown_fields(data, self.fields)
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not unknown:
                raise
            detail = exc.detail if isinstance(exc.detail, dict) else {api_settings.NON_FIELD_ERRORS_KEY: exc.detail}
            raise serializers.ValidationError({**detail, **unknown}) from None
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


class StrictSerializer(RejectUnknownFields, serializers.Serializer):
    pass


class StrictModelSerializer(RejectUnknownFields, serializers.ModelSerializer):
    pass


class StrictSchema(OpenApiSerializerExtension):
    """drf-spectacular: a strict serializer's request body allows no other properties."""

    target_class = RejectUnknownFields
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


class ThreadValidator:
    """`validate(data)` with one bound serializer of `serializer_class` per thread, reused request after request.

    A serializer instance deep-copies every declared field (and each nested serializer's) when it first reads
    its fields: ~0.25 ms of the ~0.3 ms a flight search's body took to validate, on a path whose whole budget
    over the provider is 5 ms (issue 13). The fields are bound once per thread instead; each call resets the
    instance's per-call state (its data, validated data and errors), as a new instance would start. Safe for
    serializers whose fields and validate methods keep nothing between calls beyond that (DRF's fields do
    not; a `default` that must be a fresh object is a callable such as `list`, called per call), and only
    synchronously: one thread validates one body at a time.

    Returns (validated_data, errors): errors is DRF's detail ({} when valid), as `serializer.errors` gives it."""

    def __init__(self, serializer_class):
        self.serializer_class = serializer_class
        self._local = threading.local()

    def validate(self, data):
        serializer = getattr(self._local, "serializer", None)
        if serializer is None:
            serializer = self._local.serializer = self.serializer_class(data=data)
        serializer.initial_data = data
        try:
            if serializer.is_valid():
                return serializer.validated_data, {}
            return None, serializer.errors
        finally:
            # As a new instance would start, and holding no request's data until the next one.
            serializer.initial_data = None
            for state in ("_validated_data", "_errors", "_data"):
                serializer.__dict__.pop(state, None)
