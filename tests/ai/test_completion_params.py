"""The completion view's validation (ai.serializers.completion_params) against CompletionRequestSerializer itself.

completion_params checks an everyday body without DRF's per-request field copies; for every body it must give
exactly what the serializer gives: the same validated_data (types and key order included), or the same error.
"""

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from ai.serializers import CompletionRequestSerializer, _plain, completion_params


def _serializer(data):
    serializer = CompletionRequestSerializer(data=data)
    try:
        serializer.is_valid(raise_exception=True)
    except ValidationError as exc:
        return "error", exc.detail
    return "ok", serializer.validated_data


def _ours(data):
    try:
        return "ok", completion_params(data)
    except ValidationError as exc:
        return "error", exc.detail


def assert_same(data):
    mine, theirs = _ours(data), _serializer(data)
    assert mine[0] == theirs[0], (data, mine, theirs)
    assert mine[1] == theirs[1], data
    if mine[0] == "ok":
        assert list(mine[1]) == list(theirs[1])  # key order, as DRF builds it
        assert repr(mine[1]) == repr(theirs[1])  # types too: 1.0, not 1
        assert mine[1]["messages"] is not data["messages"]  # copies, as DRF's ListField of DictFields makes


USER = {"role": "user", "content": "Say hello"}

EVERYDAY = [
    {"messages": [USER]},
    {"model": "gpt-4o-mini", "messages": [USER]},
    {"messages": [{"role": "system", "content": "Be brief."}, USER], "task": "simple", "max_tokens": 64},
    {"messages": [USER], "provider": "openai", "model": "gpt-4o-mini", "temperature": 0, "cache": True},
    {"messages": [USER], "temperature": 0.7, "stream": True, "cache": None},
    {"messages": [USER], "stream": False, "cache": False, "max_tokens": 200_000, "temperature": 2},
]


@pytest.mark.parametrize("body", EVERYDAY)
def test_an_everyday_body_is_checked_without_the_serializer_and_gives_what_it_gives(body):
    assert _plain(body) is not None
    assert_same(body)


BAD_OR_ODD = [
    None,
    [],
    "messages",
    {},
    {"messages": []},
    {"messages": USER},
    {"messages": "hello"},
    {"messages": [USER, "hello"]},
    {"messages": [{"role": "user"}]},
    {"messages": [{"role": "wizard", "content": "hi"}]},
    {"messages": [{"role": "user", "content": 5}]},
    {"messages": [USER], "model": ""},
    {"messages": [USER], "model": "  gpt-4o-mini "},
    {"messages": [USER], "model": "m" * 129},
    {"messages": [USER], "model": "m" * 128},
    {"messages": [USER], "model": "gpt\x00"},
    {"messages": [USER], "model": "gpt\ud800"},
    {"messages": [USER], "model": "modèle"},
    {"messages": [USER], "model": 4},
    {"messages": [USER], "model": None},
    {"messages": [USER], "task": "  "},
    {"messages": [USER], "task": True},
    {"messages": [USER], "provider": "nobody"},
    {"messages": [USER], "provider": ""},
    {"messages": [USER], "provider": None},
    {"messages": [USER], "max_tokens": 0},
    {"messages": [USER], "max_tokens": 200_001},
    {"messages": [USER], "max_tokens": "64"},
    {"messages": [USER], "max_tokens": 64.0},
    {"messages": [USER], "max_tokens": 64.5},
    {"messages": [USER], "max_tokens": True},
    {"messages": [USER], "max_tokens": None},
    {"messages": [USER], "temperature": -0.1},
    {"messages": [USER], "temperature": 2.5},
    {"messages": [USER], "temperature": "0.5"},
    {"messages": [USER], "temperature": False},
    {"messages": [USER], "temperature": None},
    {"messages": [USER], "stream": "true"},
    {"messages": [USER], "stream": 1},
    {"messages": [USER], "stream": None},
    {"messages": [USER], "cache": "false"},
    {"messages": [USER], "cache": 0},
    {"messages": [USER], "top_p": 0.9},
    {"messages": [USER], "modle": "gpt-4o-mini"},
    {"messages": [USER], "csrfmiddlewaretoken": "x"},
    {"messages": [USER], "tools": []},
    {"messages": [USER], "tool_choice": "auto"},
    {"messages": [USER], "cache_control": {"type": "ephemeral"}},
]


@pytest.mark.parametrize("body", BAD_OR_ODD)
def test_any_other_body_gets_the_serializers_answer(body):
    assert_same(body)


_text = st.one_of(
    st.sampled_from(["", " ", "gpt-4o-mini", " simple", "simple ", "openai", "anthropic", "writing", "x" * 128]),
    st.text(max_size=12),
    st.text(alphabet=st.characters(codec="ascii"), max_size=130),
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=199_998, max_value=200_002),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1, max_value=3),
    _text,
)
_message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]), "content": _text}),
    st.dictionaries(st.sampled_from(["role", "content", "name", "x"]), _scalar, max_size=3),
)
_messages = st.one_of(st.lists(_message, max_size=3), _scalar, st.lists(_scalar, max_size=2))
_keys = st.sampled_from(
    ["task", "model", "provider", "max_tokens", "temperature", "stream", "cache", "tools", "top_p", "tool_choice"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=_messages, rest=st.dictionaries(_keys, _scalar, max_size=5), with_messages=st.booleans())
@example(messages=[USER], rest={"temperature": 1}, with_messages=True)
@example(messages=[USER], rest={"max_tokens": 1, "stream": True, "cache": None}, with_messages=True)
def test_completion_params_always_answers_as_the_serializer_does(messages, rest, with_messages):
    body = {**({"messages": messages} if with_messages else {}), **rest}
    assert_same(body)
