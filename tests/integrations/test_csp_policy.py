"""The Content-Security-Policy header: the policy django-csp builds, built once for responses without a nonce.

integrations.middleware.CSPMiddleware answers a response that has no nonce and no per-view changes (every API
and AI answer) with the policy built once; a page whose template asked for a nonce, or a view that changes its
own policy, gets django-csp's own per-response build.
"""

import re

import csp.middleware
import pytest
from csp.exceptions import CSPNonceError
from csp.utils import build_policy
from django.http import HttpResponse
from django.test import RequestFactory

from integrations.middleware import CSPMiddleware

pytestmark = pytest.mark.django_db


@pytest.fixture
def builds(monkeypatch):
    """How many times django-csp's middleware built a policy."""
    calls = []
    real = csp.middleware.build_policy

    def counting(*args, **kwargs):
        calls.append(kwargs.get("nonce"))
        return real(*args, **kwargs)

    monkeypatch.setattr(csp.middleware, "build_policy", counting)
    return calls


def test_api_answers_carry_django_csps_policy_built_once_not_per_response(user_client, builds):
    answers = [user_client.get("/api/v1/ai/usage/") for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert {a["Content-Security-Policy"] for a in answers} == {build_policy()}
    assert "Content-Security-Policy-Report-Only" not in answers[0]
    assert builds == []


def test_a_page_with_a_nonce_gets_its_own_nonce_in_each_answer(staff_client, builds):
    nonces = []
    for _ in range(2):
        page = staff_client.get("/api/docs/")
        assert page.status_code == 200
        nonce = re.search(r"'nonce-([^']+)'", page["Content-Security-Policy"]).group(1)
        assert f'nonce="{nonce}"' in page.content.decode()
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    assert len(builds) >= 2


def test_a_view_that_replaces_part_of_the_policy_gets_its_own(staff_client):
    policy = staff_client.get("/api/redoc/")["Content-Security-Policy"]
    assert "worker-src 'self' blob:" in policy and "'unsafe-inline'" in policy.split("style-src ")[1].split(";")[0]
    assert staff_client.get("/api/v1/ai/usage/")["Content-Security-Policy"] == build_policy()


def test_a_changed_policy_setting_applies_to_the_next_answer(user_client, settings):
    assert "img-src 'self' data:" in user_client.get("/api/v1/ai/usage/")["Content-Security-Policy"]
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'self'"]}}
    answer = user_client.get("/api/v1/ai/usage/")
    assert answer["Content-Security-Policy"] == "default-src 'none'"
    assert answer["Content-Security-Policy-Report-Only"] == "default-src 'self'"


def test_an_exempt_or_excluded_response_gets_no_policy_and_a_late_nonce_is_an_error(settings):
    middleware = CSPMiddleware(lambda request: HttpResponse())
    request = RequestFactory().get("/api/v1/anything/")
    middleware.process_request(request)
    exempt = HttpResponse()
    exempt._csp_exempt = True
    assert "Content-Security-Policy" not in middleware.process_response(request, exempt)
    with pytest.raises(CSPNonceError):
        str(request.csp_nonce)  # asked for after the header went out: django-csp's error, not a silent miss
    settings.CONTENT_SECURITY_POLICY = {**settings.CONTENT_SECURITY_POLICY, "EXCLUDE_URL_PREFIXES": ["/api/"]}
    request = RequestFactory().get("/api/v1/anything/")
    middleware.process_request(request)
    assert "Content-Security-Policy" not in middleware.process_response(request, HttpResponse())
