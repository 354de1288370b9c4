"""Keep secrets out of anything the hub stores or logs about a call."""

import re

from django.conf import settings

from .registry import all_providers

_PATTERNS = [
    re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{6,}"),  # Stripe keys
    re.compile(r"\bwhsec_[A-Za-z0-9]{6,}"),
    re.compile(r"\bsk-(ant-|proj-|or-)?[A-Za-z0-9_\-]{10,}"),  # OpenAI / Anthropic / OpenRouter keys
    re.compile(r"\bxai-[A-Za-z0-9]{10,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub tokens
    re.compile(r"\bya29\.[A-Za-z0-9_\-\.]+"),  # Google access tokens
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"(?i)(bearer|token|basic)\s+[A-Za-z0-9_\-\.=:+/]{8,}"),
    re.compile(
        r"(?i)((?:api[_-]?key|access[_-]?token|refresh[_-]?token|secret|password|auth[_-]?token)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"
    ),
]
REDACTED = "[redacted]"


def _secret_setting_names():
    names = set()
    for provider in all_providers():
        for item in provider.requires:
            names.update(item if isinstance(item, tuple) else (item,))
    names.update(n for n in dir(settings) if n.endswith(("_SECRET", "_TOKEN", "_KEY", "_KEYS", "_SECRET_KEY")))
    return names


def _secret_values():
    values = []
    for name in _secret_setting_names():
        value = getattr(settings, name, "")
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, str) and len(v) >= 6:
                values.append(v)
    return sorted(values, key=len, reverse=True)


def redact(text, limit=2000):
    """Remove configured secret values and anything shaped like a credential."""
    if not text:
        return ""
    text = str(text)
    # Read on every call (only error paths redact): settings may change at run time in tests.
    for value in _secret_values():
        text = text.replace(value, REDACTED)
    for pattern in _PATTERNS[:-1]:
        text = pattern.sub(REDACTED, text)
    text = _PATTERNS[-1].sub(lambda m: m.group(1) + REDACTED, text)
    return text[:limit]
