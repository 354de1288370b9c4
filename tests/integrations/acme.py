"""A tiny adapter for the test provider `acme`, written like a real one:
plain HTTP (intercepted with `responses`), errors translated with
`error_from_http`, results reported to the gateway."""

import requests
from django.conf import settings

from integrations import gateway
from integrations.errors import error_from_http

URL = "https://api.acme.test/v1/send"


def send(body, *, owner=None, scope=None, related=None):
    with gateway.attempt("acme", "send", owner=owner, scope=scope, related=related, idempotency_key="k1") as call:
        resp = requests.post(
            URL,
            json=body,
            headers={"Authorization": f"Bearer {settings.ACME_API_KEY}"},
            timeout=gateway.timeout_for("acme"),
        )
        data = resp.json() if resp.content else {}
        if resp.status_code >= 400:
            raise error_from_http(
                "acme",
                resp.status_code,
                headers=resp.headers,
                code=data.get("code"),
                message=data.get("message", ""),
                request_id=resp.headers.get("Request-Id"),
            )
        call.record(http_status=resp.status_code, request_id=resp.headers.get("Request-Id"), units=data.get("units"))
    return data
