"""What the OpenAI and Anthropic streams share."""

from ..messages import MessageError, parse_arguments


def _arguments(raw):
    try:
        return parse_arguments(raw)
    except MessageError:
        # A model can emit broken JSON; hand it back as is rather than fail the whole answer.
        return {"_unparsed": raw}


class _Stream:
    """`async for` yields text deltas as they arrive; `result` is the Completion once exhausted."""

    def __init__(self, provider, model, sdk_stream):
        self.provider = provider
        self.model = model
        self._sdk = sdk_stream
        self.text = []
        self.result = None
        headers = getattr(getattr(sdk_stream, "response", None), "headers", {}) or {}
        self.request_id = headers.get("x-request-id") or headers.get("request-id") or ""

    async def __aiter__(self):
        # Read inside the caller's AIAdapter.aattempt, which translates the SDK's errors.
        async for text in self._events():
            yield text

    def input_so_far(self):
        """The input as the provider counted it before its answer ended (a Completion's input fields:
        input_tokens, cached_tokens, cache_write_tokens...), or None when it tells it only at the end (OpenAI's
        usage chunk): what a stream cut short is booked with."""
        return None

    async def aclose(self):
        """Stop reading and release the connection: the provider sees the stream closed."""
        await self._sdk.close()
