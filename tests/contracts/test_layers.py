"""#10 point 1: one domain error, turned into a response in two places only.

Services raise `DomainError` (or let a `ProviderError` through) and never
import DRF or the API layer; views and admin never catch either to translate
it by hand: the API's exception handler (`integrations/api/errors.py`) and
admin actions' `integrations.actions.each_row` are the only two places that do.
Read from the source, so a new app is held to it without a test of its own.
"""

import ast
import inspect
from pathlib import Path

import pytest

from integrations import errors

ROOT = Path(__file__).resolve().parents[2]
APPS = [p.parent for p in ROOT.glob("*/apps.py") if p.parent.name not in {"tests", "bench"}]
TRANSLATORS = {ROOT / "integrations" / "api" / "errors.py", ROOT / "integrations" / "actions.py"}


def _modules(patterns):
    found = set()
    for app in APPS:
        for pattern in patterns:
            found.update(p for p in app.rglob(pattern) if not {"migrations", "management"} & set(p.parts))
    return sorted(found)


def _module_name(path):
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _imported(path):
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return names


SERVICES = _modules(["services.py", "services/*.py"])


def test_there_are_services_to_check():
    apps = {path.relative_to(ROOT).parts[0] for path in SERVICES}
    assert {"payments", "documents", "messaging", "ai", "scheduling", "travel", "integrations"} <= apps


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_service_imports_nothing_from_drf_or_the_api_layer(path):
    bad = [
        name
        for name in _imported(path)
        if name.split(".")[0] == "rest_framework" or name == "integrations.api" or name.startswith("integrations.api.")
    ]
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}: raise integrations.errors.DomainError instead"


ERROR_NAMES = {
    name
    for name, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.DomainError | errors.ProviderError)
}
FACES = [
    p for p in _modules(["views.py", "views/*.py", "admin.py", "*_admin.py", "admin/*.py"]) if p not in TRANSLATORS
]


def _caught(handler):
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type] if handler.type else []
    return [k.id if isinstance(k, ast.Name) else k.attr for k in kinds if isinstance(k, ast.Name | ast.Attribute)]


def test_there_are_views_and_admins_to_check():
    assert len(FACES) > 15 and len(ERROR_NAMES) > 8


@pytest.mark.parametrize("path", FACES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_view_or_admin_catches_a_domain_or_provider_error_itself(path):
    caught = [
        f"line {node.lineno}: except {name}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ExceptHandler)
        for name in _caught(node)
        if name in ERROR_NAMES
    ]
    assert caught == [], f"{path.relative_to(ROOT)} translates errors by hand ({caught}): let them reach the handler"
