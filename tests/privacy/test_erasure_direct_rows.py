"""Erasure and the call-log rows written without the hand-off: a failed attempt, an operation written at once
(`refund.create`), a row written directly while Redis is down, a web worker's batch (gateway.batchlog), an AI
answer's booking (gateway.bookings, or its own round trip). Each row of the user's written once the erasure has
started belongs to the pseudonym, without its error text, as the rows the erasure re-pointed; other users' rows are
written as ever."""

import json
import re
import threading
from decimal import Decimal

import pytest
import responses
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, connections, transaction
from django.test import AsyncClient, Client

from ai import leases, usage
from ai.models import AiRequest, AiSpend, AiUsageMonthly
from integrations import aio, erasing, gateway
from integrations.gateway import batchlog
from integrations.models import IdempotencyRecord, ProviderCall, UsageRollup
from integrations.states import transition
from privacy import erasure as erasure_service
from privacy.models import Erasure
from tests.ai.conftest import (  # noqa: F401 - the AI tests' fixtures
    URL,
    AsgiCall,
    apost,
    asgi_completion,
    auth_headers,
    fake_ai,
    server_loop,
)
from tests.ai.fakes import openai_chat, openai_sse_chunks, sse_response
from tests.factories import UserFactory
from tests.integrations import acme
from tests.messaging.factories import SmsFactory
from tests.privacy.interleave import commit_held_through_an_erasure

from .conftest import API as TWILIO_API

pytestmark = [pytest.mark.django_db]


def twilio_cannot_redact(user, http):
    """Twilio cannot redact the user's SMS yet: their erasure re-points the call log and the AI rows, then waits to
    retry, and the account stays until then (so a row written for the user then would stay theirs)."""
    SmsFactory(owner=user, status="delivered", external_id="SM" + "7" * 32)
    http.add(responses.POST, re.compile(rf"{re.escape(TWILIO_API)}/Messages/\w+\.json"), status=503)


def erasure_left_retrying(user, staff, http):
    """The user's erasure run once and left retrying (twilio_cannot_redact)."""
    twilio_cannot_redact(user, http)
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff, expedite=True)
    assert erasure_service.erasure_run(erasure_id=erasure.pk) == "retrying"
    erasure.refresh_from_db()
    assert {"integrations", "ai"} <= set(erasure.report["done"]) and "messaging" not in erasure.report["done"]
    assert get_user_model().objects.filter(pk=user.pk).exists()
    return get_user_model().objects.get(username=erasure.pseudonym)


def calls_of(provider="acme"):
    return sorted(ProviderCall.objects.filter(provider=provider).values_list("owner_id", "operation", "error_message"))


def rollup_owners(provider="acme"):
    return dict(UsageRollup.objects.filter(provider=provider).values_list("owner_id", "calls"))


def sent(user, operation="send"):
    with gateway.attempt("acme", operation, owner=user) as att:
        att.record(http_status=200, units={"segments": 1})
    return att


def asked(client, body, headers=None):
    """The completion `body` posted with `client`'s token (and `headers`), returned once its booking is written."""

    async def ask():
        resp = await apost(None, body, {**auth_headers(client), **(headers or {})})
        await aio.settle(timeout=10)
        return resp

    return async_to_sync(ask)()


def answered(owner):
    """A search the client was answered, its row left to the web worker's writer (attempt's log_after_response)."""
    att = gateway.Attempt("acme", "search", owner, None, None, None, 1)
    att.record(http_status=200)
    return att


@pytest.fixture
def refused_acme(http):
    """Acme refuses a message to a number, and says which (as Twilio's 400 does)."""
    http.add(
        responses.POST,
        acme.URL,
        status=400,
        json={"code": "invalid_to", "message": "The 'To' number +15550001234 is not a valid phone number."},
    )


@pytest.mark.parametrize("status", Erasure.Status.values)
def test_the_writers_hand_a_users_rows_to_the_pseudonym_once_the_erasure_has_started_not_before(status, staff_user):
    """The writers' check (integrations.erasing; on PostgreSQL the functions of migration privacy 0003, whose
    statuses are written out in SQL) agrees with the erasure on when it has started."""
    user = UserFactory()
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff_user)
    Erasure.objects.filter(pk=erasure.pk).update(status=status)
    started = status in (*erasure_service.ERASING, Erasure.Status.DONE)

    with transaction.atomic():
        pseudonyms = erasing.pseudonyms_now([user.pk])
    assert (user.pk in pseudonyms) == started
    if started:
        assert get_user_model().objects.get(pk=pseudonyms[user.pk]).username == erasure.pseudonym
    if connection.vendor == "postgresql":
        guarded = erasing.guard_statements([user.pk])
        with transaction.atomic(), connection.cursor() as cursor:
            try:
                with transaction.atomic():
                    for sql, params in guarded:
                        cursor.execute(sql, params)
            except DatabaseError as exc:
                assert started and f"erasure started: {erasure.pseudonym}" in str(exc)
            else:
                assert not started


def test_a_failed_attempt_after_the_erasure_started_is_logged_for_the_pseudonym_without_its_error_text(
    fake_provider, refused_acme, http, staff_user
):
    user, other = UserFactory(), UserFactory()
    pseudonym = erasure_left_retrying(user, staff_user, http)

    for owner in (user, other):
        with pytest.raises(Exception, match="not a valid phone number"):  # the caller still hears why
            acme.send({"to": "+15550001234"}, owner=owner)

    quoted = "The 'To' number +15550001234 is not a valid phone number."
    assert calls_of() == sorted([(pseudonym.pk, "send", ""), (other.pk, "send", quoted)])
    assert rollup_owners() == {pseudonym.pk: 1, other.pk: 1}


@pytest.mark.redis
def test_a_row_written_at_once_in_a_worker_after_the_erasure_started_belongs_to_the_pseudonym(
    fake_provider, drainer, handoff_keys_empty, http, staff_user
):
    """refund.create is written at once, not handed off (handoff.WRITTEN_AT_ONCE): a retry reads it back."""
    user, other = UserFactory(), UserFactory()
    pseudonym = erasure_left_retrying(user, staff_user, http)

    sent(user, "refund.create")
    sent(other, "refund.create")

    assert calls_of() == sorted([(pseudonym.pk, "refund.create", ""), (other.pk, "refund.create", "")])
    assert rollup_owners() == {pseudonym.pk: 1, other.pk: 1}
    assert drainer.drain_once() == 0  # nothing was handed off


@pytest.mark.redis
def test_a_row_written_directly_while_redis_is_down_belongs_to_the_pseudonym(
    fake_provider, drainer, handoff_keys_empty, http, staff_user, monkeypatch
):
    user = UserFactory()
    pseudonym = erasure_left_retrying(user, staff_user, http)

    def redis_down(call):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(drainer, "put", redis_down)
    sent(user)

    assert calls_of() == [(pseudonym.pk, "send", "")]
    assert rollup_owners() == {pseudonym.pk: 1}


def test_a_web_workers_batch_holding_a_row_of_the_user_writes_it_for_the_pseudonym(fake_provider, http, staff_user):
    user, other = UserFactory(), UserFactory()
    writer = batchlog.CallLogWriter(interval=3600)
    pseudonym = erasure_left_retrying(user, staff_user, http)

    for owner in (user, other, user):
        writer.put(answered(owner), 12.5, "req-1")
    writer.flush()

    assert calls_of() == sorted([(pseudonym.pk, "search", "")] * 2 + [(other.pk, "search", "")])
    assert rollup_owners() == {pseudonym.pk: 2, other.pk: 1}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the web writer and the erasure each write with a connection of their own
def test_an_erasure_waits_for_a_web_batch_being_committed_and_pseudonymises_it(fake_provider, http, monkeypatch):
    user, other, staff = UserFactory(), UserFactory(), UserFactory(is_staff=True)
    twilio_cannot_redact(user, http)
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff)  # its run is started below
    writer = batchlog.CallLogWriter(interval=3600)
    for owner in (user, other):
        writer.put(answered(owner), 12.5, "req-1")

    outcome = commit_held_through_an_erasure(monkeypatch, batchlog, "calls_record", writer.flush, erasure)

    assert outcome == {"write": None, "erasure": "retrying"}
    pseudonym = get_user_model().objects.get(username=Erasure.objects.get(pk=erasure.pk).pseudonym)
    assert calls_of() == sorted([(pseudonym.pk, "search", ""), (other.pk, "search", "")])
    assert rollup_owners() == {pseudonym.pk: 1, other.pk: 1}
    connections.close_all()


# --- AI answers -----------------------------------------------------------------------------------------------


@pytest.fixture(params=["on its own", "in the web worker's batch", "step by step, with an Idempotency-Key"])
def answered_while_erased(request, fake_ai, http, client_for, settings, asgi_completion, server_loop):  # noqa: F811
    """A completion whose provider answers while the user's erasure runs (and is left retrying): the request was
    authenticated before the erasure deactivated the account. Its answer is booked in a round trip of its own
    (aio.in_background), with others by the web worker's writer (gateway.bookings), or step by step with the call's
    row when the key's replay is stored with it. (user, pseudonym, answer)."""
    settings.AI_LOG_PROMPTS = True
    user, staff = UserFactory(), UserFactory(is_staff=True)
    twilio_cannot_redact(user, http)
    client = client_for(user)
    done = {}

    def answer_once_the_erasure_ran(request):
        def run():
            try:
                erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff)
                done["erasure"] = erasure_service.erasure_run(erasure_id=erasure.pk, now=erasure.scheduled_for)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
        return openai_chat("Hello, Ada", usage=(1000, 100, 0))

    fake_ai.add("openai", answer_once_the_erasure_ran)
    body = {"messages": [{"role": "user", "content": "Hi, I am Ada"}]}

    async def scenario():
        if request.param != "in the web worker's batch":
            key = {"Idempotency-Key": "ada-1"} if "Idempotency-Key" in request.param else {}
            resp = await apost(None, body, {**auth_headers(client), **key})
            await aio.settle(timeout=10)
            return resp.status_code, resp.json()
        server_loop()
        call = asgi_completion(body, client=client)
        await call.task
        await aio.settle(timeout=10)
        return call.status, call.json()

    status, answer = async_to_sync(scenario)()
    assert done == {"erasure": "retrying"}
    assert status == 200 and answer["content"] == "Hello, Ada"
    pseudonym = get_user_model().objects.get(username=Erasure.objects.get(subject_id=user.pk).pseudonym)
    return user, pseudonym


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the erasure runs beside the request, with a connection of its own
def test_an_ai_answer_booked_after_the_erasure_ran_is_the_pseudonyms_without_its_prompt(answered_while_erased):
    user, pseudonym = answered_while_erased

    calls = ProviderCall.objects.filter(provider="openai")
    assert list(calls.values_list("owner_id", "error_message")) == [(pseudonym.pk, "")]
    assert list(AiRequest.objects.values_list("owner_id", "prompt", "response_text")) == [(pseudonym.pk, None, "")]
    assert list(AiUsageMonthly.objects.values_list("owner_id", "requests")) == [(pseudonym.pk, 1)]
    assert list(UsageRollup.objects.filter(provider="openai").values_list("owner_id", "calls")) == [(pseudonym.pk, 1)]
    connections.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_answer_booked_for_the_pseudonym_before_the_erasure_hands_on_the_users_month_is_added_to_it(
    fake_ai,  # noqa: F811
    http,
    client_for,
):
    """The erasure has started but not reached the AI rows (its worker died): the answer is booked for the
    pseudonym; the run that then hands on the user's month adds it to the pseudonym's row of that month."""
    user, staff = UserFactory(), UserFactory(is_staff=True)
    twilio_cannot_redact(user, http)
    client = client_for(user)
    fake_ai.add("openai", openai_chat("Hello", usage=(1000, 100, 0)))
    body = {"messages": [{"role": "user", "content": "Hi, I am Ada"}]}

    first = asked(client, body)
    assert first.status_code == 200

    def answer_once_the_run_started(request):
        thread = threading.Thread(target=_erasure_started_then_its_worker_died, args=(user, staff))
        thread.start()
        thread.join(30)
        return openai_chat("Hello again", usage=(2000, 200, 0))

    fake_ai.add("openai", answer_once_the_run_started)
    second = asked(client, body)
    assert second.status_code == 200
    erasure = Erasure.objects.get(subject_id=user.pk)
    pseudonym = get_user_model().objects.get(username=erasure.pseudonym)
    assert sorted(AiUsageMonthly.objects.values_list("owner_id", "requests")) == sorted(
        [(user.pk, 1), (pseudonym.pk, 1)]
    )

    assert erasure_service.erasure_run(erasure_id=erasure.pk, now=erasure.scheduled_for) == "retrying"

    cost = Decimal(first.json()["cost_usd"]) + Decimal(second.json()["cost_usd"])
    month = AiUsageMonthly.objects.get()
    assert (month.owner_id, month.requests, month.input_tokens, month.cost_usd) == (pseudonym.pk, 2, 3000, cost)
    spend = AiSpend.objects.get()
    assert (spend.owner_id, spend.spent_usd, spend.reserved_usd) == (pseudonym.pk, cost, 0)
    assert sorted(AiRequest.objects.values_list("owner_id", flat=True)) == [pseudonym.pk, pseudonym.pk]
    assert list(ProviderCall.objects.filter(provider="openai").values_list("owner_id", flat=True)) == [pseudonym.pk] * 2
    connections.close_all()


def _erasure_started_then_its_worker_died(user, staff):
    """The user's erasure requested, and its run started and lost before it reached any app (the beat sweep then
    hands it back as retrying)."""
    try:
        erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff)
        assert transition(Erasure, erasure.pk, Erasure.Status.RUNNING, frm=Erasure.Status.SCHEDULED)
        assert transition(Erasure, erasure.pk, Erasure.Status.RETRYING, frm=Erasure.Status.RUNNING)
    finally:
        connection.close()


# --- the budget hold of a month the user has no row for yet ---------------------------------------------------------


def _aside(work):
    """`work()` in a thread with a connection of its own (another process's request or worker), waited for."""
    done = {}

    def run():
        try:
            done["result"] = work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return done.get("result")


def _erasure_run_at_once(user, staff):
    erasure, _ = erasure_service.erase_request(subject=user, requested_by=staff)
    return erasure_service.erasure_run(erasure_id=erasure.pk, now=erasure.scheduled_for)


def asked_in_session(client, body):
    """The completion `body` posted by a browser signed in to `client`'s session (no token), once booked."""

    async def ask():
        resp = await client.post(URL, body, content_type="application/json")
        await aio.settle(timeout=10)
        return resp

    return async_to_sync(ask)()


@pytest.mark.parametrize("signed_in", ["token", "session"])
@pytest.mark.parametrize("when", ["before the hold", "once the hold found no row"])
@pytest.mark.django_db(transaction=True)  # the erasure runs beside the request, with a connection of its own
def test_a_first_hold_of_the_month_after_the_erasure_ran_is_refused_and_writes_nothing(
    when,
    signed_in,
    fake_ai,  # noqa: F811
    http,
    client_for,
    monkeypatch,
):
    """The request was authenticated just before an expedited erasure deactivated the account, and the erasure's AI
    part commits before the request holds budget of a month it has no row for (or between the hold finding none and
    the row being started): no row is started for the user after the erasure handed theirs on. The request is refused
    as it would be a moment later, signed out (an API client's token deleted, a browser's session ended: each gets
    its own 401), and no provider is called."""
    user, staff = UserFactory(), UserFactory(is_staff=True)
    twilio_cannot_redact(user, http)
    if signed_in == "token":
        client = client_for(user)
        ask = asked
    else:
        client = AsyncClient()
        client.force_login(user)
        ask = asked_in_session
    fake_ai.add("openai", openai_chat("Hello, Ada", usage=(1000, 100, 0)))
    hold, ran = usage._hold, []

    def erased_around_the_hold(*args):
        if when == "before the hold" and not ran:
            ran.append(_aside(lambda: _erasure_run_at_once(user, staff)))
        held = hold(*args)
        if when == "once the hold found no row" and not ran:
            ran.append(_aside(lambda: _erasure_run_at_once(user, staff)))
        return held

    monkeypatch.setattr(usage, "_hold", erased_around_the_hold)
    body = {"messages": [{"role": "user", "content": "Hi, I am Ada"}]}

    resp = ask(client, body)

    assert ran == ["retrying"]
    later = ask(client, body)  # what the request would have been told a moment later, signed out
    code = {"token": "authentication_failed", "session": "not_authenticated"}[signed_in]
    assert (later.status_code, later.json()["error"]) == (401, code)
    assert (resp.status_code, resp.json(), resp["WWW-Authenticate"]) == (401, later.json(), "Token")
    assert fake_ai.sent == []
    assert not AiSpend.objects.exists() and not AiUsageMonthly.objects.exists() and not AiRequest.objects.exists()
    assert not ProviderCall.objects.filter(provider="openai").exists()
    connections.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the erasure runs beside the request, with a connection of its own
def test_a_hold_from_the_workers_slice_after_the_erasure_handed_the_month_on_is_the_pseudonyms(
    fake_ai,  # noqa: F811
    http,
    client_for,
    monkeypatch,
):
    """Budget leases (ai.leases): the request was authenticated just before an expedited erasure ran, and holds from
    the web worker's slice of the user's budget, which the erasure handed on with the user's month. It is booked for
    the pseudonym and settled on the pseudonym's row, no row of the user's is written, and the slice given back
    afterwards is taken off the pseudonym's row."""
    user, staff = UserFactory(), UserFactory(is_staff=True)
    twilio_cannot_redact(user, http)
    client = client_for(user)
    AiSpend.objects.create(owner=user, month=usage.month_of(), spent_usd=0)
    fake_ai.add("openai", openai_chat("Hello", usage=(1000, 100, 0)), openai_chat("Hello, Ada", usage=(1000, 100, 0)))
    body = {"messages": [{"role": "user", "content": "Hi, I am Ada"}]}
    leases.start()
    try:
        first = asked(client, body)
        assert first.status_code == 200 and len(leases._leases) == 1  # the slice, held by the user's first request
        take, ran = leases.take, []

        def erased_first(*args):
            if not ran:
                ran.append(_aside(lambda: _erasure_run_at_once(user, staff)))
            return take(*args)

        monkeypatch.setattr(leases, "take", erased_first)
        resp = asked(client, body)
        assert ran == ["retrying"]
        assert (resp.status_code, resp.json()["content"]) == (200, "Hello, Ada")
        pseudonym = get_user_model().objects.get(username=Erasure.objects.get(subject_id=user.pk).pseudonym)
        (lease,) = leases._leases.values()
        spend = AiSpend.objects.get()
        cost = Decimal(first.json()["cost_usd"]) + Decimal(resp.json()["cost_usd"])
        assert (spend.owner_id, spend.spent_usd, spend.reserved_usd) == (pseudonym.pk, cost, lease.size)
        assert list(AiRequest.objects.values_list("owner_id", "prompt")) == [(pseudonym.pk, None)] * 2
        assert leases.give_back(idle_seconds=0) == 1
        assert list(AiSpend.objects.values_list("owner_id", "spent_usd", "reserved_usd")) == [(pseudonym.pk, cost, 0)]
    finally:
        leases.stop()
    connections.close_all()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_erasure_waits_for_a_first_hold_of_the_month_being_committed_and_hands_it_on(
    fake_ai,  # noqa: F811
    http,
    client_for,
    monkeypatch,
):
    """The erasure is requested as the request reaches its hold, and its run starts while the request starts the
    month's row: the run waits for the hold's commit, then hands the row on with the hold, which the answer settles
    for the pseudonym."""
    user, staff = UserFactory(), UserFactory(is_staff=True)
    twilio_cannot_redact(user, http)
    client = client_for(user)
    fake_ai.add("openai", openai_chat("Hello, Ada", usage=(1000, 100, 0)))
    hold, requested = usage._hold, []

    def requested_before_the_hold(*args):
        if not requested:
            requested.append(_aside(lambda: erasure_service.erase_request(subject=user, requested_by=staff)[0]))
        return hold(*args)

    monkeypatch.setattr(usage, "_hold", requested_before_the_hold)
    body = {"messages": [{"role": "user", "content": "Hi, I am Ada"}]}

    def ask():
        resp = asked(client, body)
        return resp.status_code, resp.json()

    outcome = commit_held_through_an_erasure(monkeypatch, usage, "_ensure_spend_row", ask, lambda: requested[0])

    (status, answer), erased = outcome["write"], outcome["erasure"]
    assert (status, answer["content"], erased) == (200, "Hello, Ada", "retrying")
    pseudonym = get_user_model().objects.get(username=Erasure.objects.get(subject_id=user.pk).pseudonym)
    spend = AiSpend.objects.get()
    assert (spend.owner_id, spend.spent_usd, spend.reserved_usd) == (pseudonym.pk, Decimal(answer["cost_usd"]), 0)
    assert list(AiUsageMonthly.objects.values_list("owner_id", "requests")) == [(pseudonym.pk, 1)]
    assert list(AiRequest.objects.values_list("owner_id", "prompt")) == [(pseudonym.pk, None)]
    connections.close_all()


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_with_an_idempotency_key_reads_the_users_erasure_once_with_its_call_row(
    stream,
    fake_ai,  # noqa: F811
    client_for,
    monkeypatch,
):
    """Its replay is stored with the booking, step by step in the call row's transaction: the row's writer takes the
    user's lock and reads their erasure, and the booking goes by the owner it found (an answer booked once the
    erasure has started: answered_while_erased) instead of a second round trip for the same answer."""
    user = UserFactory()
    client = client_for(user)
    answer = sse_response(openai_sse_chunks(["Hel", "lo"], usage=(1000, 3, 0))) if stream else openai_chat("Hello")
    fake_ai.add("openai", answer)
    checks, check = [], erasing.pseudonyms_now

    def counted(owner_ids):
        owner_ids = list(owner_ids)
        checks.append(owner_ids)
        return check(owner_ids)

    monkeypatch.setattr(erasing, "pseudonyms_now", counted)
    body = {"messages": [{"role": "user", "content": "Say hello"}], "stream": stream}

    assert asked(client, body, {"Idempotency-Key": "hello-1"}).status_code == 200
    assert checks == [[user.pk]]
    assert list(AiRequest.objects.values_list("owner_id", flat=True)) == [user.pk]
    assert IdempotencyRecord.objects.get(owner=user, key="hello-1").status == "done"


def session_headers(user):
    """The headers of a browser signed in as `user`: its session cookie, and the CSRF token DRF asks of a POST."""
    client = Client()
    client.force_login(user)
    csrf = "c" * 32
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}; csrftoken={csrf}"
    return [("cookie", cookie), ("x-csrftoken", csrf)]


@pytest.mark.parametrize("signed_in", ["token", "session"])
@pytest.mark.django_db(transaction=True)  # the erasure runs beside the request, with a connection of its own
def test_a_fallback_after_a_billed_failure_is_not_asked_once_the_erasure_took_the_month(
    signed_in,
    fake_ai,  # noqa: F811
    user,
    user_client,
    http,
    server_loop,  # noqa: F811
    settings,
    monkeypatch,
):
    """Anthropic billed the prompt and failed; before the fallback is asked the hold must cover that bill, but the
    user's erasure (requested and run meanwhile: the request was authenticated just before) has handed their month
    and the hold to the pseudonym. The walk stops with 401, as signed out a moment later (without the token, or
    the session); the bill is the pseudonym's (before, the look-up of the user's row failed: a 500)."""
    from ai.services import booking as booking_module
    from tests.ai.test_streaming import _anthropic_failing_after_message_start

    staff = UserFactory(is_staff=True)
    twilio_cannot_redact(user, http)
    settings.AI_ROUTES = {**settings.AI_ROUTES, "writing": [["anthropic", "claude-sonnet-4-6"], ["openai", "gpt-4.1"]]}
    fake_ai.add("anthropic", sse_response(_anthropic_failing_after_message_start(2_000)))
    fake_ai.add("openai", sse_response(openai_sse_chunks(["fine"], usage=(1000, 1000, 0), model="gpt-4.1")))
    extend, ran = booking_module.budget_extend, []

    def erased_first(*args):
        ran.append(_aside(lambda: _erasure_run_at_once(user, staff)))
        return extend(*args)

    monkeypatch.setattr(booking_module, "budget_extend", erased_first)

    if signed_in == "token":
        signed = [("authorization", auth_headers(user_client)["Authorization"])]
    else:
        signed = session_headers(user)
    body = {"messages": [{"role": "user", "content": "Hi"}], "stream": True, "task": "writing", "max_tokens": 1000}

    async def ask():
        headers = [("content-type", "application/json"), *signed]
        call = AsgiCall("POST", URL, body=json.dumps(body).encode(), headers=headers)
        await call.start().task
        await aio.settle(timeout=10)
        return call

    async def scenario():
        server_loop()
        return await ask()

    call = async_to_sync(scenario)()

    assert ran == ["retrying"]
    later = async_to_sync(ask)()  # what the request would have been told a moment later, signed out
    code = {"token": "authentication_failed", "session": "not_authenticated"}[signed_in]
    assert (call.status, call.json(), later.status, later.json()["error"]) == (401, later.json(), 401, code)
    assert fake_ai.to("openai") == []  # never asked
    pseudonym = get_user_model().objects.get(username=Erasure.objects.get(subject_id=user.pk).pseudonym)
    billed = Decimal("0.006000")  # claude-sonnet-4-6: 2,000 input tokens x 3.00 / 1M
    assert list(AiSpend.objects.values_list("owner_id", "spent_usd", "reserved_usd")) == [(pseudonym.pk, billed, 0)]
    assert list(AiRequest.objects.values_list("owner_id", "error_code", "cost_usd")) == [(pseudonym.pk, code, billed)]
    connections.close_all()
