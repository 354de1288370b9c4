"""Thin adapters over the twilio SDK's REST client, each one gateway attempt.

- TWILIO_API_BASE (a local emulator) is honoured by an HTTP client that
  rewrites the host of every *.twilio.com URL the SDK builds, so every
  Twilio domain (api, messaging, ...) goes to the same place.
- The SDK's default HTTP client does not retry (requests' adapters default
  to max_retries=0), and we never pass max_retries: the gateway and the
  Celery task base are the one retry loop.
- The timeout comes from gateway.timeout_for("twilio") on every call.
- TwilioRestException carries no headers; the client keeps the last response
  so Retry-After and Twilio-Request-Id reach error_from_http.
"""

import json
import threading
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from integrations import egress, gateway
from integrations.errors import error_from_http
from integrations.providers import ProviderAdapter, credentials_key, record_cost

PROVIDER = "twilio"
# Twilio's error for "the recipient replied STOP": permanent, and an opt-out to record.
UNSUBSCRIBED_RECIPIENT = "21610"


class HubTwilioHttpClient(TwilioHttpClient):
    """The SDK's requests transport, with nothing read from the environment per request.

    The SDK asks its session to merge the environment's settings into every request, which with requests'
    trust_env scans every environment variable twice (proxy variables, then NO_PROXY for the host): the same
    per-request cost payments.providers.stripe removed from each Stripe request (issue 11). Here the session
    follows the hub's egress rule (integrations.egress.configure): the proxy the environment names for each
    Twilio host (NO_PROXY honoured) and the CA bundle it names (REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE, as
    requests reads them: the SDK passes no `verify`), both read once per process.
    """

    def __init__(self, *, api_base="", **kwargs):
        super().__init__(**kwargs)
        self.api_base = urlsplit(api_base) if api_base else None
        self.last_response = None
        egress.configure(self.session)

    def request(self, method, url, *args, **kwargs):
        self.last_response = None
        parts = urlsplit(url)
        if self.api_base is not None and parts.hostname and parts.hostname.endswith(".twilio.com"):
            url = urlunsplit((self.api_base.scheme, self.api_base.netloc, parts.path, parts.query, parts.fragment))
        self.last_response = super().request(method, url, *args, **kwargs)
        return self.last_response


_local = threading.local()


def _client():
    """One client per thread and configuration (keeps the connection pool; a rotated token makes a new one)."""
    key = credentials_key(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_API_BASE)
    cached = getattr(_local, "client", None)
    if cached is None or cached[0] != key:
        http = HubTwilioHttpClient(api_base=settings.TWILIO_API_BASE)
        # environment={} so stray TWILIO_* process variables never override settings.
        client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, http_client=http, environment={})
        cached = (key, client)
        _local.client = cached
    client = cached[1]
    client.http_client.timeout = gateway.timeout_for(PROVIDER)
    return client


def _translate(exc, client):
    """A TwilioRestException as the hub's own error, with the response's headers."""
    response = client.http_client.last_response
    headers = dict(response.headers) if response is not None and response.headers else {}
    if isinstance(exc, TwilioServiceException):
        message = exc.detail or exc.title
    else:
        message = exc.msg
    return error_from_http(
        PROVIDER,
        exc.status,
        headers=headers,
        code=str(exc.code) if exc.code else None,
        message=str(message or ""),
        request_id=headers.get("Twilio-Request-Id") or headers.get("twilio-request-id"),
    )


def _translate_page(exc, client):
    """The SDK's page loader raises a bare TwilioException("Unable to fetch page", response)."""
    response = client.http_client.last_response
    if response is None:
        return None
    try:
        body = json.loads(response.text or "{}")
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    headers = dict(response.headers or {})
    return error_from_http(
        PROVIDER,
        response.status_code,
        headers=headers,
        code=str(body["code"]) if body.get("code") else None,
        message=str(body.get("message") or ""),
        request_id=_request_id(headers),
    )


class TwilioAdapter(ProviderAdapter):
    """Twilio's errors, translated once with the headers of the response the SDK kept."""

    provider = PROVIDER
    sdk_errors = (TwilioException,)

    def translate(self, exc):
        client = _client()
        if isinstance(exc, (TwilioRestException, TwilioServiceException)):
            return _translate(exc, client)
        # The SDK's page loader raises a bare TwilioException("Unable to fetch page", response).
        return _translate_page(exc, client)


TWILIO = TwilioAdapter()


def _request_id(headers):
    headers = headers or {}
    return headers.get("Twilio-Request-Id") or headers.get("twilio-request-id")


def price_usd(price, unit):
    """Twilio reports what it charged as a negative decimal string; None until it is known."""
    if price in (None, "") or (unit or "USD").upper() != "USD":
        return None
    try:
        return abs(Decimal(str(price)))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class MessageResult:
    sid: str
    status: str
    segments: int
    price_usd: Decimal | None
    error_code: str
    error_message: str
    # What a lookup matches a lost message on.
    body: str = ""
    direction: str = ""
    messaging_service_sid: str = ""
    date_created: datetime | None = None
    # The sender: none (or the service's id) while a messaging service has not chosen a number.
    from_number: str = ""
    # When Twilio sent it (none before), and when the resource last changed (its latest status, or later).
    date_sent: datetime | None = None
    date_updated: datetime | None = None


@dataclass(frozen=True)
class CallResult:
    sid: str
    status: str
    duration_seconds: int | None
    price_usd: Decimal | None
    # What a lookup matches a lost call on.
    direction: str = ""
    date_created: datetime | None = None


def _message_result(m):
    return MessageResult(
        sid=m.sid,
        status=m.status or "",
        segments=int(m.num_segments or 0),
        price_usd=price_usd(m.price, m.price_unit),
        error_code=str(m.error_code or ""),
        error_message=m.error_message or "",
        body=m.body or "",
        direction=m.direction or "",
        messaging_service_sid=m.messaging_service_sid or "",
        date_created=m.date_created,
        from_number=m.from_ or "",
        date_sent=m.date_sent,
        date_updated=m.date_updated,
    )


def sender_kwargs(sender):
    """A messaging service SID (MG...) picks the number itself; anything else is the From number."""
    if sender.startswith("MG"):
        return {"messaging_service_sid": sender}
    return {"from_": sender}


def message_send(*, to, body, sender, status_callback, segments_estimate, owner=None, related=None):
    """Send one SMS; the sender is the rate-limit scope (Twilio queues per number)."""
    client = _client()
    with TWILIO.attempt("sms.send", owner=owner, scope=sender, related=related) as call:
        response = client.messages.create_with_http_info(
            to=to, body=body, status_callback=status_callback, **sender_kwargs(sender)
        )
        result = _message_result(response.data)
        # A messaging service reports 0 segments until it picks a sender: use our count.
        # The cost is booked once Twilio has priced the message (message_fetch).
        call.record(
            http_status=response.status_code,
            request_id=_request_id(response.headers),
            units={"segments": result.segments or segments_estimate},
            cost_usd=0,
        )
    return result


# A lookup reads one page: To + From + a day narrow it to a handful of messages.
LOOKUP_PAGE_SIZE = 1000


def _list_page(client, resource, operation, filters, *, owner=None, related=None):
    """One page of a list resource (messages, calls) through the gateway; reads cost nothing."""
    with TWILIO.attempt(operation, owner=owner, scope="rest", related=related) as call:
        response = resource.page_with_http_info(**filters)
        call.record(http_status=response.status_code, request_id=_request_id(response.headers), cost_usd=0)
    return response


def messages_list(*, to, sender, on_or_after: date | None = None, owner=None, related=None):
    """Messages to `to` from `sender` (a number, or a messaging service matched on the results),
    optionally with DateSent on or after a day (GMT); newest first, one page."""
    client = _client()
    filters = {"to": to, "page_size": LOOKUP_PAGE_SIZE}
    if not sender.startswith("MG"):
        filters["from_"] = sender
    if on_or_after is not None:
        # The SDK passes a string through: the API's "DateSent>=YYYY-MM-DD".
        filters["date_sent_after"] = on_or_after.isoformat()
    response = _list_page(client, client.messages, "sms.lookup", filters, owner=owner, related=related)
    results = [_message_result(m) for m in response.data]
    if sender.startswith("MG"):
        results = [r for r in results if r.messaging_service_sid == sender]
    return results


def _fetch(operation, resource, to_result, *, owner=None, related=None, cost=None):
    """Fetch one message or call (its billed price) as one gateway read; `cost(result)` -> (units, cost_usd)."""
    with TWILIO.attempt(operation, owner=owner, scope="rest", related=related) as call:
        response = resource.fetch_with_http_info()
        result = to_result(response.data)
        call.record(http_status=response.status_code, request_id=_request_id(response.headers))
        record_cost(call, cost, result)
    return result


def message_fetch(*, sid, owner=None, related=None, cost=None, operation="sms.price"):
    """Fetch a message: its status, billed price and error's description (`operation` names why, in the call log)."""
    return _fetch(operation, _client().messages(sid), _message_result, owner=owner, related=related, cost=cost)


def _call_result(c):
    return CallResult(
        sid=c.sid,
        status=c.status or "",
        duration_seconds=int(c.duration) if c.duration not in (None, "") else None,
        price_usd=price_usd(c.price, c.price_unit),
        direction=c.direction or "",
        date_created=c.date_created,
    )


def call_place(*, to, sender, twiml, status_callback, recording_callback=None, record=False, owner=None, related=None):
    client = _client()
    extra = {}
    if record:
        extra = {"record": True, "recording_status_callback": recording_callback}
    with TWILIO.attempt("call.create", owner=owner, scope=f"voice:{sender}", related=related) as call:
        response = client.calls.create_with_http_info(
            to=to,
            from_=sender,
            twiml=twiml,
            status_callback=status_callback,
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            **extra,
        )
        call.record(http_status=response.status_code, request_id=_request_id(response.headers))
    return _call_result(response.data)


def calls_list(*, to, sender, on_or_after: date | None = None, owner=None, related=None):
    """Calls to `to` from `sender`, optionally with StartTime on or after a day (GMT); newest first, one page."""
    client = _client()
    filters = {"to": to, "from_": sender, "page_size": LOOKUP_PAGE_SIZE}
    if on_or_after is not None:
        # The SDK passes a string through: the API's "StartTime>=YYYY-MM-DD".
        filters["start_time_after"] = on_or_after.isoformat()
    response = _list_page(client, client.calls, "call.lookup", filters, owner=owner, related=related)
    return [_call_result(c) for c in response.data]


def call_fetch(*, sid, owner=None, related=None, cost=None):
    """Fetch a finished call: its duration and billed price."""
    return _fetch("call.price", _client().calls(sid), _call_result, owner=owner, related=related, cost=cost)


def signature_valid(*, url, params, signature, token):
    """X-Twilio-Signature over the public URL and the POST parameters, checked by the SDK's validator."""
    if not signature or not token:
        return False
    return RequestValidator(token).validate(url, params, signature)


# --- Recordings and transcriptions (privacy export and erasure) ---------------------------------


def _media_url(recording_sid):
    url = f"https://api.twilio.com/2010-04-01/Accounts/{settings.TWILIO_ACCOUNT_SID}/Recordings/{recording_sid}.mp3"
    if settings.TWILIO_API_BASE:
        base = urlsplit(settings.TWILIO_API_BASE)
        parts = urlsplit(url)
        url = urlunsplit((base.scheme, base.netloc, parts.path, parts.query, parts.fragment))
    return url


def recording_media(*, sid, consume, owner=None, related=None):
    """consume(chunks) with the recording's MP3 streamed from Twilio (one gateway attempt); returns its result.

    The SDK decodes every answer as text, so the media is read with `requests` (already the SDK's transport),
    streamed in chunks rather than held whole, over a session that follows the egress rule like the SDK's.
    """
    with TWILIO.attempt("recording.media", owner=owner, scope="rest", related=related) as call:
        try:
            response = egress.session().get(
                _media_url(sid),
                auth=(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN),
                stream=True,
                timeout=gateway.timeout_for(PROVIDER),
            )
        except requests.Timeout as exc:
            from integrations.errors import ProviderTimeout

            raise ProviderTimeout(PROVIDER, str(exc)) from exc
        except requests.RequestException as exc:
            from integrations.errors import ProviderUnavailable

            raise ProviderUnavailable(PROVIDER, str(exc)) from exc
        with response:
            if response.status_code >= 400:
                raise error_from_http(
                    PROVIDER, response.status_code, headers=dict(response.headers), message=response.text[:200]
                )
            counted = [0]

            def chunks():
                for chunk in response.iter_content(64 * 1024):
                    counted[0] += len(chunk)
                    yield chunk

            result = consume(chunks())
            call.record(
                http_status=response.status_code,
                request_id=_request_id(response.headers),
                units={"requests": 1, "bytes_out": counted[0]},
            )
    return result


def _delete(operation, resource, *, owner=None, related=None):
    """DELETE one Twilio resource; True when deleted, False when Twilio no longer had it (404: already gone)."""
    from integrations.errors import PermanentError

    try:
        with TWILIO.attempt(operation, owner=owner, scope="rest", related=related) as call:
            resource.delete()
            call.record(http_status=204, units={"requests": 1})
    except PermanentError as exc:
        if exc.http_status == 404:
            return False
        raise
    return True


def recording_delete(*, sid, owner=None, related=None):
    return _delete("recording.delete", _client().recordings(sid), owner=owner, related=related)


def transcription_delete(*, sid, owner=None, related=None):
    return _delete("transcription.delete", _client().transcriptions(sid), owner=owner, related=related)


MEDIA_PAGE_SIZE = 50  # one page holds them all: Twilio takes at most 10 media files per message


def message_media_delete(*, sid, owner=None, related=None):
    """Delete the media files Twilio keeps for a message (an MMS's pictures): GET its Media list, then DELETE
    /Messages/{sid}/Media/{media sid} for each. How many were deleted; a message or a file Twilio no longer has
    counts as done (0)."""
    from integrations.errors import PermanentError

    client = _client()
    try:
        listed = _list_page(
            client,
            client.messages(sid).media,
            "sms.media_list",
            {"page_size": MEDIA_PAGE_SIZE},
            owner=owner,
            related=related,
        )
    except PermanentError as exc:
        if exc.http_status == 404:
            return 0
        raise
    media = client.messages(sid).media
    return sum(_delete("sms.media_delete", media(m.sid), owner=owner, related=related) for m in listed.data)


def message_redact(*, sid, owner=None, related=None):
    """Redact a message's body at Twilio: POST the Message with an empty Body, which Twilio documents as the way
    to remove the text while keeping the record (status, price, segments: what Twilio bills and the hub's cost
    reconciliation read). True when redacted, False when Twilio no longer has the message (404: nothing to
    redact). Repeating it is harmless: an empty body redacted again stays empty."""
    from integrations.errors import PermanentError

    client = _client()
    try:
        with TWILIO.attempt("sms.redact", owner=owner, scope="rest", related=related) as call:
            response = client.messages(sid).update_with_http_info(body="")
            # Twilio charges nothing for an update.
            call.record(http_status=response.status_code, request_id=_request_id(response.headers), cost_usd=0)
    except PermanentError as exc:
        if exc.http_status == 404:
            return False
        raise
    return True
