from rest_framework import serializers

from integrations.api.strict import StrictSerializer

from .messages import MessageError, parse_request
from .providers import PROVIDERS


class PromptCacheSerializer(StrictSerializer):
    """Anthropic's cache_control, as its SDK takes it (CacheControlEphemeralParam)."""

    type = serializers.ChoiceField(choices=["ephemeral"])
    ttl = serializers.ChoiceField(
        choices=["5m", "1h"],
        default="5m",
        help_text="How long the prompt stays cached: 5m (a write bills 1.25x the input price) or 1h (2x).",
    )


class CompletionRequestSerializer(StrictSerializer):
    """One request shape for every provider; messages and tools in OpenAI's or Anthropic's format."""

    messages = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        help_text="system/user/assistant/tool messages (OpenAI chat format, or Anthropic content blocks).",
    )
    task = serializers.CharField(
        required=False, help_text="A route name from AI_ROUTES, e.g. simple, writing, reasoning."
    )
    model = serializers.CharField(required=False, max_length=128)
    provider = serializers.ChoiceField(choices=PROVIDERS, required=False, help_text="Pin the model to one provider.")
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=200_000)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    tools = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="JSON-schema function definitions."
    )
    tool_choice = serializers.JSONField(required=False, help_text='"auto", "none", "required", or a tool\'s name.')
    stream = serializers.BooleanField(required=False, default=False)
    cache = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: answer from the cache when possible; false: never; absent: only when temperature is 0.",
    )
    cache_control = PromptCacheSerializer(
        required=False,
        help_text="Anthropic's prompt cache: sent as the request's top-level cache_control (a cache point after the "
        "last cacheable block). Its writes are held and booked at the TTL's rate. Other providers cache prompts "
        "on their own and are not sent it.",
    )

    def validate(self, attrs):
        try:
            attrs["request"] = parse_request(attrs)
        except MessageError as exc:
            raise serializers.ValidationError({"messages": [str(exc)]}) from None
        return attrs


class ToolCallSerializer(StrictSerializer):
    id = serializers.CharField()
    name = serializers.CharField()
    arguments = serializers.DictField()
    thought_signature = serializers.CharField(
        required=False,
        help_text="Gemini's signature of its reasoning behind this call: send the call back with it (Gemini 3 "
        "refuses a conversation whose function calls lack theirs).",
    )


class TokenUsageSerializer(StrictSerializer):
    input_tokens = serializers.IntegerField(help_text="All the input, including cached_tokens and cache_write_tokens.")
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField(help_text="Input read from the provider's prompt cache.")
    cache_write_tokens = serializers.IntegerField(
        help_text="Input written to the provider's prompt cache (Anthropic bills it above the input price)."
    )


class FallbackSerializer(StrictSerializer):
    provider = serializers.CharField()
    model = serializers.CharField()
    error = serializers.CharField()
    detail = serializers.CharField()
    http_status = serializers.IntegerField(required=False)
    provider_code = serializers.CharField(required=False)
    retry_after = serializers.FloatField(required=False)


class CompletionSerializer(StrictSerializer):
    provider = serializers.CharField()
    model = serializers.CharField()
    content = serializers.CharField(allow_blank=True)
    tool_calls = ToolCallSerializer(many=True)
    finish_reason = serializers.CharField()
    usage = TokenUsageSerializer()
    cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6)
    cached = serializers.BooleanField()
    fallbacks = FallbackSerializer(many=True)


class ModelUsageSerializer(StrictSerializer):
    provider = serializers.CharField()
    model = serializers.CharField()
    requests = serializers.IntegerField()
    cached_requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    cache_write_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6)


class AiUsageSerializer(StrictSerializer):
    month = serializers.CharField()
    budget_usd = serializers.DecimalField(max_digits=12, decimal_places=2)
    spent_usd = serializers.DecimalField(max_digits=14, decimal_places=6)
    remaining_usd = serializers.DecimalField(max_digits=14, decimal_places=6)
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    cache_write_tokens = serializers.IntegerField()
    by_model = ModelUsageSerializer(many=True)


# --- the everyday body without DRF's per-request field copies -------------------------------------------

# The fields a plain body may carry (completion_params); a body with any other (tools, tool_choice, cache_control,
# or one the serializer does not know) goes through the serializer.
_PLAIN_FIELDS = ("messages", "task", "model", "provider", "max_tokens", "temperature", "stream", "cache")


def _plain_text(value, max_length=None):
    """True for a CharField value the serializer keeps as it is: a non-empty str with no surrounding
    whitespace, printable ASCII (so no NUL or surrogate), within max_length."""
    return (
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and value != ""
        and value == value.strip()
        and (max_length is None or len(value) <= max_length)
    )


def _plain(data):
    """CompletionRequestSerializer's validated_data for a body of the everyday shape, or None for any other.

    Accepts only what the serializer accepts unchanged (JSON's own types, values in range); everything else is
    None, never an error of its own."""
    if type(data) is not dict or not data.keys() <= _PLAIN_KEYS:
        return None
    messages = data.get("messages")
    if type(messages) is not list or not messages or any(type(m) is not dict for m in messages):
        return None
    params = {"messages": [dict(m) for m in messages]}  # the ListField of DictFields copies each message
    if "task" in data:
        if not _plain_text(data["task"]):
            return None
        params["task"] = data["task"]
    if "model" in data:
        if not _plain_text(data["model"], 128):
            return None
        params["model"] = data["model"]
    if "provider" in data:
        provider = data["provider"]
        if type(provider) is not str or provider not in PROVIDERS:
            return None
        params["provider"] = provider
    if "max_tokens" in data:
        max_tokens = data["max_tokens"]
        if type(max_tokens) is not int or not 1 <= max_tokens <= 200_000:
            return None
        params["max_tokens"] = max_tokens
    if "temperature" in data:
        temperature = data["temperature"]
        if type(temperature) not in (int, float) or not 0 <= temperature <= 2:
            return None
        params["temperature"] = float(temperature)
    stream = data.get("stream", False)
    cache = data.get("cache")
    if type(stream) is not bool or (cache is not None and type(cache) is not bool):
        return None
    params["stream"] = stream
    params["cache"] = cache
    try:
        params["request"] = parse_request(params)
    except MessageError:
        return None  # the serializer words the error
    return params


_PLAIN_KEYS = frozenset(_PLAIN_FIELDS)


def completion_params(data):
    """CompletionRequestSerializer(data=data)'s validated_data, or the ValidationError it raises.

    A serializer instance deep-copies its declared fields, and their validation runs field by field: ~0.4 ms of a
    completion's request hop, the largest step after the budget hold's round trip (bench/profile_ai_request.py,
    issue 11). A body of the everyday shape (messages plus the scalar options, each of the JSON type the field
    keeps as it is) is checked here and gives the same validated_data; any other body (tools, a value to
    coerce or out of range, an unknown field, a message the parser refuses) goes through the serializer, so every
    error a client sees is the serializer's own (tests/ai/test_completion_params.py compares the two)."""
    params = _plain(data)
    if params is not None:
        return params
    serializer = CompletionRequestSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
