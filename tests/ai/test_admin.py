import pytest

from ai.models import AiBudget, AiRequest
from tests.ai.fakes import openai_chat

pytestmark = pytest.mark.django_db

SECRET_PROMPT = "my medical history is private"


def _ask(complete):
    return complete(messages=[{"role": "user", "content": SECRET_PROMPT}])


def test_prompts_are_not_kept_or_shown_unless_ai_log_prompts_is_on(fake_ai, complete, client, staff_user):
    fake_ai.add("openai", openai_chat("noted"))
    _ask(complete)
    row = AiRequest.objects.get()
    assert row.prompt is None and row.response_text == ""
    client.force_login(staff_user)
    page = client.get(f"/admin/ai/airequest/{row.pk}/change/")
    assert page.status_code == 200
    assert b"Prompt" not in page.content and SECRET_PROMPT.encode() not in page.content


def test_with_ai_log_prompts_on_staff_see_the_prompt_and_answer(fake_ai, complete, client, staff_user, settings):
    settings.AI_LOG_PROMPTS = True
    fake_ai.add("openai", openai_chat("noted"))
    _ask(complete)
    row = AiRequest.objects.get()
    assert row.prompt["messages"][0]["content"] == SECRET_PROMPT and row.response_text == "noted"
    client.force_login(staff_user)
    page = client.get(f"/admin/ai/airequest/{row.pk}/change/")
    assert SECRET_PROMPT.encode() in page.content


def test_staff_list_requests_usage_and_budgets_in_admin(fake_ai, complete, client, staff_user, user):
    fake_ai.add("openai", openai_chat("hi"))
    complete()
    AiBudget.objects.create(owner=user, monthly_limit_usd=25)
    client.force_login(staff_user)
    for url in ("/admin/ai/airequest/", "/admin/ai/aiusagemonthly/", "/admin/ai/aibudget/", "/admin/ai/aibudget/add/"):
        assert client.get(url).status_code == 200, url
