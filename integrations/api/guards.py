"""Input the database cannot store is refused at the door, as the JSON error shape.

PostgreSQL rejects NUL in text and jsonb, and a lone UTF-16 surrogate (which
JSON's \\ud800 escape can produce) cannot be encoded at all: both used to
reach the database and come back as 500s. DRF's CharField already refuses
them in declared fields; these guards cover query strings (filters,
cursors) and every string anywhere in a JSON body (JSONField payloads).
A body nested deeper than MAX_JSON_DEPTH is refused too: no request shape
needs it, the NUL scan stops there, and past about a thousand levels the JSON
decoder itself gives up with a RecursionError (a 500).
"""

import re

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_JSON_DEPTH = 100


class _TooDeep(Exception):
    pass


def unstorable(text):
    return bool(_UNSTORABLE.search(text))


def _first_unstorable(value, depth=0):
    if isinstance(value, str):
        return unstorable(value)
    if depth > MAX_JSON_DEPTH:
        raise _TooDeep
    if isinstance(value, dict):
        return any(_first_unstorable(k, depth + 1) or _first_unstorable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_first_unstorable(v, depth + 1) for v in value)
    return False


def strip_unstorable(value):
    """The same data with NUL and lone surrogates removed from every string (for signed webhook payloads)."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("", value)
    if isinstance(value, dict):
        return {strip_unstorable(k): strip_unstorable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_unstorable(v) for v in value]
    return value


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
            found = _first_unstorable(data)
        except (RecursionError, _TooDeep):
            raise ParseError(f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.") from None
        if found:
            raise ParseError("The body contains a NUL character or an unpaired surrogate (\\u0000, \\ud800...).")
        return data


class QueryStringGuardMiddleware:
    """A NUL anywhere in the query string of an /api/ request is a 400, before any filter sees it.

    Sync and async alike: one sync-only middleware makes Django run the whole chain
    (and every async view through it) in its one thread-sensitive worker thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        refused = self._refused(request)
        if self.is_async:
            return self._acall(request, refused)
        return refused or self.get_response(request)

    async def _acall(self, request, refused):
        return refused or await self.get_response(request)

    @staticmethod
    def _refused(request):
        if request.path.startswith("/api/") and any(
            unstorable(k) or any(unstorable(v) for v in values) for k, values in request.GET.lists()
        ):
            return JsonResponse(
                {"error": "invalid", "detail": "A query parameter contains a NUL character."}, status=400
            )
        return None
