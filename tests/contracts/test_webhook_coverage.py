"""Every webhook verifier in the hub is held to the webhook contract (tests/contracts/webhooks.py).

A verifier is a concrete `integrations.webhooks.WebhookVerifier` subclass that
names its `provider`. Its contract is a test class subclassing `WebhookContract`
(in any tests/**/test_*contract*.py) that posts to `/webhooks/<provider>/...`,
or that says `provider = "<name>"` when its URL is named otherwise. Adding
Zoom or a calendar's push without its contract subclass fails here.
"""

import importlib
import inspect
from pathlib import Path

import tests
from integrations.webhooks import WebhookVerifier
from tests.contracts.webhooks import WebhookContract

TESTS = Path(tests.__file__).parent


def _verifiers():
    found, todo = {}, list(WebhookVerifier.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.provider and not cls.__module__.startswith(("tests.", "bench.")):  # a test's or bench's own stub
            found.setdefault(cls.provider, []).append(f"{cls.__module__}.{cls.__qualname__}")
    return found


def _contracts():
    classes = []
    for path in sorted(TESTS.rglob("test_*contract*.py")):
        module = importlib.import_module(".".join(path.relative_to(TESTS.parent).with_suffix("").parts))
        classes += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, WebhookContract) and cls.url and cls.__module__ == module.__name__
        ]
    return classes


def _provider_of(contract):
    named = getattr(contract, "provider", "")
    if named:
        return {named}
    parts = [p for p in contract.url.split("/") if p]
    return {parts[1], parts[1].replace("-", "_")} if len(parts) > 1 and parts[0] == "webhooks" else set()


def test_the_hub_has_the_verifiers_it_should():
    assert {"stripe", "twilio", "gmail", "outlook"} <= set(_verifiers())


def test_every_verifier_has_a_contract_test_class():
    covered = set().union(*(_provider_of(c) for c in _contracts()))
    missing = {provider: classes for provider, classes in _verifiers().items() if provider not in covered}
    assert not missing, (
        f"webhook verifiers without a contract test: {missing}; subclass tests.contracts.webhooks.WebhookContract "
        "in tests/<app>/test_webhook_contract.py (a fixture: url, secret_setting, event, malformed, post)"
    )
