"""JSON answers written with orjson, for views whose payload is large (flight offers).

DRF's JSONRenderer runs the stdlib encoder over every value: for fifty flight
offers that was a millisecond of each search answer. `OrjsonRenderer` writes the
bytes DRF writes for plain JSON data (compact separators, UTF-8, U+2028 and
U+2029 escaped; dates, decimals and lazy strings through DRF's own encoder),
twenty times faster, and also takes `orjson.Fragment` values: JSON serialised
once (an offer when its search was cached), copied into the answer as it is.

Where it could not write what DRF writes, DRF's renderer does, with any fragment
expanded first: an indented answer (the browsable API, `Accept: application/json;
indent=4`), DRF's ASCII-only or spaced-out settings, a type orjson refuses. One
difference stays: a float in exponent form is spelt `1e16`, not `1e+16` (the same
number); NaN is null instead of an error. Use it where the payload has neither.
"""

import orjson
from rest_framework.renderers import JSONRenderer

# DRF escapes these two (valid JSON, but line breaks to JavaScript); in UTF-8 JSON their bytes only occur in strings.
_JS_ESCAPES = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        try:
            body = orjson.dumps(data, default=self.encoder_class().default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)  # DRF's own error, if any
        indent = self.get_indent(accepted_media_type, renderer_context or {})
        if indent is not None or self.ensure_ascii or not self.compact:
            # DRF's layout over the same values, any fragment expanded.
            return super().render(orjson.loads(body), accepted_media_type, renderer_context)
        for raw, escaped in _JS_ESCAPES:
            if raw in body:
                body = body.replace(raw, escaped)
        return body
