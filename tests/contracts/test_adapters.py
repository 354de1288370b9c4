"""Every vendor adapter is held to the one adapter contract (integrations/providers.py).

An adapter is a concrete `ProviderAdapter` subclass naming its `provider`.
Each must name a registry entry, say which SDK exceptions it translates and
translate them itself, and refuse a call to its provider while that provider
(if its registry entry needs settings) is not configured (503 provider_not_configured, before the block runs and
before anything is booked). A new adapter is covered here by existing.
"""

import importlib
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings

from integrations.errors import ProviderNotConfigured
from integrations.models import ProviderCall
from integrations.providers import ProviderAdapter
from integrations.registry import PROVIDERS

pytestmark = pytest.mark.django_db


# A module that defines an adapter: `class XAdapter(SomeAdapter):` (the hub's naming).
ADAPTER_CLASS = re.compile(r"^class \w+\((?:\w+\.)*\w*Adapter\b", re.MULTILINE)


def _import_the_adapter_modules():
    """Adapters are found by subclassing, so every module of the hub's own apps that defines one is imported first:
    an adapter reached only through a lazy import (mail's `for_connection`, an OAuth flow named by its dotted path)
    would otherwise escape the contract. Only those modules: importing all of them would run admin registrations
    twice."""
    root = Path(settings.BASE_DIR).resolve()
    for app in apps.get_app_configs():
        path = Path(app.path).resolve()
        if root not in path.parents:
            continue  # Django's and third parties' apps
        for source in sorted(path.rglob("*.py")):
            parts = source.relative_to(root).with_suffix("").parts
            if {"migrations", "management"} & set(parts) or not ADAPTER_CLASS.search(source.read_text()):
                continue
            importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))


def _adapters():
    _import_the_adapter_modules()
    found, todo = [], list(ProviderAdapter.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.provider and not cls.__module__.startswith(("tests.", "bench.")):
            found.append(cls)
    return sorted(found, key=lambda cls: cls.provider)


ADAPTERS = _adapters()


def test_the_hub_has_the_adapters_it_should():
    assert {
        "stripe",
        "twilio",
        "s3",
        "clamav",
        "email",
        "gmail",
        "outlook",
        "google_oauth",
        "microsoft_oauth",
        "duffel",
        *("openai", "anthropic", "openrouter", "xai", "gemini", "github_models"),
    } <= {cls.provider for cls in ADAPTERS}


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda cls: cls.__name__)
def test_an_adapter_names_a_registered_provider_and_translates_its_own_sdk_errors(adapter):
    assert adapter.provider in PROVIDERS, f"{adapter.__name__}: add {adapter.provider!r} to integrations.registry"
    assert isinstance(adapter.sdk_errors, tuple) and adapter.sdk_errors, f"{adapter.__name__} names no SDK errors"
    assert all(isinstance(e, type) and issubclass(e, BaseException) for e in adapter.sdk_errors)
    assert adapter.translate is not ProviderAdapter.translate, f"{adapter.__name__} must implement translate()"


# A provider whose registry entry needs no setting (alert_webhook: the channels are rows) is always configured.
NEEDS_SETTINGS = [cls for cls in ADAPTERS if getattr(PROVIDERS.get(cls.provider), "requires", ())]


@pytest.mark.parametrize("adapter", NEEDS_SETTINGS, ids=lambda cls: cls.__name__)
def test_an_unconfigured_provider_is_refused_before_the_call_runs(adapter, settings):
    for item in PROVIDERS[adapter.provider].requires:
        for name in item if isinstance(item, tuple) else (item,):
            setattr(settings, name, "")
    ran = []
    with pytest.raises(ProviderNotConfigured) as refused, adapter().attempt("contract.probe"):
        ran.append(True)
    assert refused.value.as_api_error().status == 503 and refused.value.provider == adapter.provider
    assert ran == [] and not ProviderCall.objects.filter(provider=adapter.provider).exists()
