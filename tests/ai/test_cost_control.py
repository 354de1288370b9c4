"""AI cost control (#17.3): only known models, no unpriced ones, capped answers, budgets held before the call."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from ai.models import AiBudget, AiFreeModel, AiRequest, AiSpend
from ai.usage import budget_reserve
from integrations.errors import DomainError
from integrations.models import ProviderCall
from tests.ai.fakes import error, openai_chat

pytestmark = pytest.mark.django_db


def test_a_pair_on_no_route_and_not_in_the_price_table_is_refused(fake_ai, complete):
    resp = complete(provider="openai", model="o1-pro")
    assert resp.status_code == 400
    body = resp.json()
    assert (body["error"], body["provider"], body["model"]) == ("unknown_model", "openai", "o1-pro")
    assert fake_ai.sent == [] and not AiRequest.objects.exists() and not AiSpend.objects.exists()


def test_a_priced_pair_off_every_route_is_accepted(fake_ai, complete):
    fake_ai.add("openai", openai_chat("reasoned", model="gpt-5-mini", usage=(100, 10, 0)))
    body = complete(provider="openai", model="gpt-5-mini").json()
    assert (body["provider"], body["model"]) == ("openai", "gpt-5-mini")
    assert body["cost_usd"] == "0.000045"  # (100 x 0.25 + 10 x 2.00) / 1M


def test_an_unpriced_model_named_by_the_client_is_refused_until_staff_mark_it_free(fake_ai, complete, settings):
    settings.AI_ROUTES = {**settings.AI_ROUTES, "simple": [["xai", "grok-unpriced"]]}
    resp = complete(provider="xai", model="grok-unpriced")
    assert resp.status_code == 400 and resp.json()["error"] == "model_not_priced"
    assert fake_ai.sent == []

    AiFreeModel.objects.create(provider="xai", model="grok-unpriced", note="promotional free tier")
    fake_ai.add("xai", openai_chat("free answer", model="grok-unpriced", usage=(1000, 1000, 0)))
    body = complete(provider="xai", model="grok-unpriced").json()
    assert (body["content"], body["cost_usd"]) == ("free answer", "0.000000")


def test_an_unpriced_model_on_a_route_is_left_out_and_the_next_one_answers(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["xai", "grok-unpriced"], ["openai", "gpt-4o-mini"]]}
    fake_ai.add("openai", openai_chat("priced"))
    body = complete().json()
    assert body["provider"] == "openai"
    assert fake_ai.to("xai") == []


def test_a_route_with_no_priced_model_says_a_price_is_missing_not_an_api_key(fake_ai, complete, settings):
    settings.AI_ROUTES = {"simple": [["xai", "grok-unpriced"], ["openai", "gpt-4o-mini"]]}
    settings.OPENAI_API_KEY = ""
    resp = complete()
    body = resp.json()
    assert resp.status_code == 503 and body["error"] == "ai_not_configured"
    # xai has its key: what it lacks is a price. openai lacks its key.
    assert "xai/grok-unpriced" in body["detail"] and "price" in body["detail"]
    assert "OPENAI_API_KEY" in body["detail"] and "XAI_API_KEY" not in body["detail"]
    assert [(s["provider"], s["error"]) for s in body["skipped"]] == [
        ("xai", "model_not_priced"),
        ("openai", "provider_not_configured"),
    ]
    assert fake_ai.sent == []


def test_max_tokens_above_the_users_cap_is_a_400_and_an_override_raises_it(fake_ai, complete, user, settings):
    settings.AI_USER_MAX_TOKENS = 2000
    resp = complete(max_tokens=2001)
    assert resp.status_code == 400
    assert (resp.json()["error"], resp.json()["max_tokens_limit"]) == ("max_tokens_over_limit", 2000)
    assert fake_ai.sent == []
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("10"), max_tokens=4000)
    fake_ai.add("openai", openai_chat("long"))
    assert complete(max_tokens=3000).status_code == 200
    assert fake_ai.to("openai")[0].json["max_completion_tokens"] == 3000


def test_every_provider_gets_a_max_tokens_when_the_client_gives_none(fake_ai, complete, settings):
    settings.AI_DEFAULT_MAX_TOKENS = 700
    fake_ai.add("openai", openai_chat("capped"))
    complete()
    assert fake_ai.to("openai")[0].json["max_completion_tokens"] == 700


@pytest.fixture
def a_dollar_per_answer(settings):
    """gpt-4o-mini at $1 per 1,000 output tokens and free input: max_tokens=1000 may cost exactly $1."""
    settings.AI_ROUTES = {"simple": [["openai", "gpt-4o-mini"]]}
    settings.AI_MODEL_PRICES = {**settings.AI_MODEL_PRICES, "openai": {"gpt-4o-mini": {"input": "0", "output": "1000"}}}


def test_the_largest_cost_is_held_before_the_call_and_settled_after(fake_ai, complete, user, a_dollar_per_answer):
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("1.50"))
    fake_ai.add("openai", openai_chat("short", usage=(10, 5, 0)))
    assert complete(max_tokens=1000).json()["cost_usd"] == "0.005000"
    spend = AiSpend.objects.get(owner=user)
    assert (spend.spent_usd, spend.reserved_usd) == (Decimal("0.005"), Decimal("0"))
    # $0.005 spent; a second $1 hold still fits, a $1.50 one would not.
    resp = complete(max_tokens=1500)
    assert resp.status_code == 402
    assert (resp.json()["error"], resp.json()["request_max_usd"]) == ("budget_exceeded", "1.500000")
    assert len(fake_ai.sent) == 1


def test_a_failed_request_gives_its_hold_back(fake_ai, complete, user, a_dollar_per_answer):
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("1.50"))
    fake_ai.add("openai", error(500))
    assert complete(max_tokens=1000).status_code == 503
    spend = AiSpend.objects.get(owner=user)
    assert (spend.spent_usd, spend.reserved_usd) == (Decimal("0"), Decimal("0"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_at_the_edge_never_overshoot_the_budget(
    fake_ai, user, client_for, a_dollar_per_answer
):
    """Budget $5.50, each request may cost $1: exactly five are let through, though
    none has finished (and been charged) when the others ask."""
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("5.50"))
    release = threading.Event()
    lock = threading.Lock()
    at_provider = []

    def held_answer(request):
        with lock:
            at_provider.append(request)
        assert release.wait(30), "the test never released the provider"
        return openai_chat("done", usage=(10, 1000, 0))

    fake_ai.add("openai", *[held_answer] * 20)
    refused = []
    # Built once here: twenty test clients loading the middleware at the same moment race
    # in django-prometheus's metric registration (a test-client artefact; a server loads it once).
    client_for(user).get("/healthz")

    def one(_):
        try:
            return _post()
        finally:
            connections.close_all()  # this thread's connection, or the test database cannot be dropped

    def _post():
        resp = client_for(user).post(
            "/api/v1/ai/completions/",
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000},
            format="json",
        )
        if resp.status_code != 200:
            with lock:
                refused.append(resp)
        return resp.status_code

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(one, i) for i in range(20)]
        # Every request is either refused or waiting at the provider before any is answered.
        for _ in range(600):
            with lock:
                if len(at_provider) + len(refused) == 20:
                    break
            threading.Event().wait(0.05)
        release.set()
        statuses = sorted(f.result() for f in futures)
    fake_ai.queues["openai"].clear()  # the 15 answers nobody asked for
    assert statuses == [200] * 5 + [402] * 15
    assert len(at_provider) == 5
    spend = AiSpend.objects.get(owner=user)
    assert (spend.spent_usd, spend.reserved_usd) == (Decimal("5"), Decimal("0"))
    assert ProviderCall.objects.filter(outcome="ok").count() == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_hold_outside_a_transaction_is_one_statement_and_still_refuses_past_the_limit(user):
    # The web server's hop is not inside a transaction: the hold and its commit are one round trip there.
    budget_reserve(user.pk, Decimal("0.60"), limit=Decimal("1.00"))  # the month's row is made first
    with CaptureQueriesContext(connection) as queries:
        budget_reserve(user.pk, Decimal("0.30"), limit=Decimal("1.00"))
    assert len(queries) == 1 and "synchronous_commit" in queries[0]["sql"]
    with pytest.raises(DomainError) as refused:
        budget_reserve(user.pk, Decimal("0.20"), limit=Decimal("1.00"))
    assert refused.value.status == 402 and refused.value.extra["reserved_usd"] == "0.900000"
    spend = AiSpend.objects.get(owner=user)
    assert (spend.spent_usd, spend.reserved_usd) == (Decimal("0"), Decimal("0.90"))
    with connection.cursor() as cursor:  # the setting ended with its statement's transaction
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_a_cached_answer_needs_no_budget(fake_ai, complete, user, a_dollar_per_answer):
    AiBudget.objects.create(owner=user, monthly_limit_usd=Decimal("1.00"))
    fake_ai.add("openai", openai_chat("same", usage=(10, 1, 0)))
    assert complete(temperature=0, max_tokens=1000).status_code == 200  # $1 held, $0.001 spent
    AiBudget.objects.filter(owner=user).update(monthly_limit_usd=Decimal("0.001"))
    assert complete(temperature=0, max_tokens=1000).json()["cached"] is True
