import pytest

from tests.ai.fakes import anthropic_message, openai_chat

pytestmark = pytest.mark.django_db

WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
DEEP = "[" * 5000 + "]" * 5000
CALL = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}


def test_openai_tool_calls_come_back_with_parsed_arguments(fake_ai, complete):
    fake_ai.add("openai", openai_chat(None, tool_calls=[CALL]))
    body = complete(tools=[WEATHER_OPENAI], tool_choice="required").json()
    assert body["tool_calls"] == [CALL]
    assert body["finish_reason"] == "tool_calls"
    sent = fake_ai.to("openai")[0].json
    assert sent["tools"] == [WEATHER_OPENAI]
    assert sent["tool_choice"] == "required"


def test_anthropic_tool_use_comes_back_in_the_same_shape(fake_ai, complete):
    fake_ai.add("anthropic", anthropic_message("Let me check.", tool_uses=[{**CALL, "id": "toolu_1"}]))
    body = complete(
        task="writing", tools=[WEATHER_OPENAI], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    ).json()
    assert body["tool_calls"] == [{**CALL, "id": "toolu_1"}]
    assert (body["content"], body["finish_reason"]) == ("Let me check.", "tool_calls")
    sent = fake_ai.to("anthropic")[0].json
    # OpenAI-format tool definitions and choice, rendered the Anthropic way.
    assert sent["tools"] == [WEATHER_ANTHROPIC]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_openai_format_tool_results_reach_anthropic_as_tool_result_blocks(fake_ai, complete):
    fake_ai.add("anthropic", anthropic_message("It is sunny in Paris and Lyon."))
    messages = [
        {"role": "user", "content": "Weather in Paris and Lyon?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": {"sky": "clear"}},
    ]
    body = complete(task="writing", messages=messages, tools=[WEATHER_OPENAI]).json()
    assert body["content"] == "It is sunny in Paris and Lyon."
    assert fake_ai.to("anthropic")[0].json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Lyon?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Lyon"}},
            ],
        },
        # Both results in one user turn, as Anthropic requires.
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": '{"sky": "clear"}'},
            ],
        },
    ]


def test_anthropic_format_tool_results_reach_openai_as_tool_messages(fake_ai, complete):
    fake_ai.add("openai", openai_chat("Sunny."))
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}
            ],
        },
    ]
    body = complete(messages=messages, tools=[WEATHER_ANTHROPIC], tool_choice={"type": "any"}).json()
    assert body["content"] == "Sunny."
    sent = fake_ai.to("openai")[0].json
    assert sent["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    ]
    assert sent["tools"] == [WEATHER_OPENAI]
    assert sent["tool_choice"] == "required"


def test_tool_calls_the_hub_returned_can_be_sent_back_as_they_are(fake_ai, complete):
    fake_ai.add("openai", openai_chat(None, tool_calls=[CALL]), openai_chat("Two sunny days."))
    first = complete(tools=[WEATHER_OPENAI]).json()
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": first["content"], "tool_calls": first["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    assert complete(messages=messages, tools=[WEATHER_OPENAI]).json()["content"] == "Two sunny days."
    assert fake_ai.to("openai")[1].json["messages"][1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris", "days": 2}',
    }


def _failed_lookup(**result):
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", **result}]},
    ]


def test_a_tool_result_marked_is_error_reaches_anthropic_still_marked(fake_ai, complete):
    # Anthropic's tool_result carries is_error: the model is told the tool failed, not that it answered "timeout".
    fake_ai.add("anthropic", anthropic_message("The weather service is down."), anthropic_message("Sunny."))
    complete(task="writing", messages=_failed_lookup(content="timeout", is_error=True), tools=[WEATHER_ANTHROPIC])
    complete(task="writing", messages=_failed_lookup(content="timeout"), tools=[WEATHER_ANTHROPIC])
    failed, answered = (sent.json["messages"][-1]["content"] for sent in fake_ai.to("anthropic"))
    assert failed == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "timeout", "is_error": True}]
    assert answered == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "timeout"}]


def test_a_failed_tool_result_is_not_answered_from_the_cache_of_a_successful_one(fake_ai, complete):
    fake_ai.add("anthropic", anthropic_message("Sunny."), anthropic_message("The weather service is down."))
    ok = complete(task="writing", temperature=0, messages=_failed_lookup(content="timeout"), tools=[WEATHER_ANTHROPIC])
    failed = complete(
        task="writing",
        temperature=0,
        messages=_failed_lookup(content="timeout", is_error=True),
        tools=[WEATHER_ANTHROPIC],
    )
    assert ok.json()["content"] == "Sunny."
    assert (failed.json()["content"], failed.json()["cached"]) == ("The weather service is down.", False)


@pytest.mark.parametrize(
    "messages,tools,tool_choice",
    [
        ([{"role": "tool", "tool_call_id": "nobody", "content": "x"}], [WEATHER_OPENAI], None),
        ([{"role": "user", "content": "x"}], [WEATHER_OPENAI], {"type": "tool", "name": "other"}),
        ([{"role": "user", "content": "x"}], [{"type": "function", "function": {}}], None),
        (
            [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{broken"}}]}],
            [],
            None,
        ),
        (_failed_lookup(content="timeout", is_error="yes"), [WEATHER_ANTHROPIC], None),
        # Nested past what the JSON decoder recurses into: a RecursionError, once a 500.
        (
            [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": DEEP}}]}],
            [],
            None,
        ),
    ],
)
def test_malformed_tool_messages_are_refused_with_400(fake_ai, complete, messages, tools, tool_choice):
    body = {"messages": messages, "tools": tools}
    if tool_choice:
        body["tool_choice"] = tool_choice
    resp = complete(**body)
    assert resp.status_code == 400, resp.json()
    assert resp.json()["error"] == "invalid"
