"""The error responses every operation can give, in the one error shape, added to the OpenAPI schema.

A drf-spectacular postprocessing hook: one shared `Error` component
(`{"error": code, "detail": sentence, ...}`) and, on every operation, the
statuses the hub's common machinery can answer with, unless the view already
documents that status itself. The schema fuzz test
(tests/security/test_schema_fuzz.py) fails on any status not listed here.
"""

ERROR_COMPONENT = {
    "type": "object",
    "description": "Every error the API answers with. `error` is a stable code; extra fields depend on it "
    "(`fields` for invalid input, `retry_after` with a Retry-After header, `provider` and `missing` for "
    "provider_not_configured).",
    "properties": {
        "error": {"type": "string", "description": "Stable machine-readable code, e.g. invalid, not_found."},
        "detail": {"type": "string", "description": "A sentence for people."},
        "retry_after": {"type": "integer", "description": "Seconds to wait, as in the Retry-After header."},
    },
    "required": ["error", "detail"],
    "additionalProperties": True,
}

EVERY_OPERATION = {
    "400": "Invalid input: a malformed query parameter, cursor, header or body.",
    "401": "No valid credentials (`Authorization: Token <key>`), or an expired token.",
    "403": "Not allowed (staff only), or a session request without its CSRF token.",
    "404": "No such object among yours (another user's object is 404 too).",
    "406": "The Accept header asks for a format the API does not serve.",
    "429": "Too many requests; wait for Retry-After seconds.",
    "503": "A dependency (database, Redis, broker, provider) is unavailable or not configured; "
    "retry after Retry-After seconds.",
}
WITH_BODY = {
    "409": "Conflicts with the object's current state, or the same Idempotency-Key is still running.",
    "413": "The request body is too large.",
    "415": "Unsupported Content-Type.",
    "422": "The Idempotency-Key was used for a different request.",
}
PROVIDER_CALLS = {
    "502": "The provider failed or refused the call.",
    "504": "The provider did not answer in time.",
}


def _error_response(description, streams):
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    if streams:
        # A client that asked for a stream gets its error as one `event: error` with the same JSON as data.
        content["text/event-stream"] = {
            "schema": {
                "type": "object",
                "description": "One Server-Sent Event: `event: error`, `data:` the Error object as JSON.",
                "properties": {"event": {"type": "string", "enum": ["error"]}, "data": {"type": "string"}},
            }
        }
    return {"description": description, "content": content}


def document_errors(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_COMPONENT
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = dict(EVERY_OPERATION)
            if method in {"post", "put", "patch", "delete"}:
                statuses.update(WITH_BODY)
                statuses.update(PROVIDER_CALLS)
            streams = any(
                "text/event-stream" in (response.get("content") or {})
                for status, response in operation["responses"].items()
                if str(status).startswith("2")
            )
            for status, description in statuses.items():
                operation["responses"].setdefault(status, _error_response(description, streams))
    return result
