"""The hub's own error types for provider work.

Every adapter translates its vendor's exceptions into these, so retry logic
never guesses: `retryable` errors may be tried again (after `retry_after`
seconds at least), everything else is permanent.
"""

from .api.errors import ApiError


class ProviderError(Exception):
    retryable = False
    api_status = 502
    api_code = "provider_error"

    def __init__(self, provider, message="", *, code=None, http_status=None, retry_after=None, request_id=None):
        super().__init__(message or self.__class__.__name__)
        self.provider = provider
        self.message = message
        self.code = code
        self.http_status = http_status
        self.retry_after = retry_after
        self.request_id = request_id

    def as_api_error(self):
        headers = {}
        extra = {"provider": self.provider}
        if self.retry_after:
            headers["Retry-After"] = str(int(self.retry_after + 0.999))
            extra["retry_after"] = int(self.retry_after + 0.999)
        if self.code:
            extra["provider_code"] = self.code
        return ApiError(self.api_status, self.api_code, self.detail_sentence(), headers=headers, **extra)

    def detail_sentence(self):
        return f"{self.provider} failed: {self.message}"


class ProviderNotConfigured(ProviderError):
    api_status = 503
    api_code = "provider_not_configured"

    def __init__(self, provider, missing):
        super().__init__(provider, f"{provider} is not configured; set {', '.join(missing)}.")
        self.missing = list(missing)

    def as_api_error(self):
        return ApiError(503, self.api_code, self.message, provider=self.provider, missing=self.missing)
