"""Every state machine in the hub, tested from its own table.

Any model that declares `TRANSITIONS` (on `status`, or the field named by
`STATE_FIELD`) is found here and held to the contract of
`integrations.states.transition`: every listed move is applied, every move the
table does not list is refused and leaves the row alone. A new model with a
state machine is covered by adding its factory to its app's
`tests/<app>/factories.py`; a model without one fails
`test_every_state_machine_has_a_factory`.
"""

import importlib
import inspect
import pkgutil

import factory
import pytest
from django.apps import apps

import tests
from integrations.states import IllegalTransition, state_field, transition

pytestmark = pytest.mark.django_db


def _machines():
    return sorted(
        (m for m in apps.get_models() if isinstance(getattr(m, "TRANSITIONS", None), dict)),
        key=lambda m: m._meta.label,
    )


def _factories():
    """The most basic factory of each model, from tests/factories.py and every tests/<app>/factories.py."""
    modules = [importlib.import_module("tests.factories")]
    for info in pkgutil.iter_modules(tests.__path__):
        if info.ispkg and importlib.util.find_spec(f"tests.{info.name}.factories"):
            modules.append(importlib.import_module(f"tests.{info.name}.factories"))
    found = {}
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not issubclass(cls, factory.django.DjangoModelFactory) or cls._meta.model is None:
                continue
            model = cls._meta.model
            known = found.get(model)
            if known is None or issubclass(known, cls):
                found[model] = cls
    return found


MACHINES = _machines()
FACTORIES = _factories()


def _moves(legal):
    params = []
    for model in MACHINES:
        states = list(model.TRANSITIONS)
        for frm in states:
            for to in states:
                if to != frm and (to in model.TRANSITIONS[frm]) == legal:
                    params.append(pytest.param(model, frm, to, id=f"{model.__name__}-{frm}-to-{to}"))
    return params


def _row(model, state):
    return FACTORIES[model](**{state_field(model): state})


def test_the_hub_has_the_state_machines_it_should():
    names = {m.__name__ for m in MACHINES}
    expected = {"Invoice", "Payment", "Refund", "Subscription", "SmsMessage", "CallLog", "DocumentVersion"}
    assert expected | {"WebhookEvent"} <= names


@pytest.mark.parametrize("model", MACHINES, ids=lambda m: m.__name__)
def test_every_state_machine_has_a_factory(model):
    assert model in FACTORIES, f"add a factory for {model.__name__} to tests/<app>/factories.py"


def _choices(model):
    return {value for value, _ in model._meta.get_field(state_field(model)).choices or ()}


# A field without choices (the test app's Shipment) has nothing to compare its table with.
@pytest.mark.parametrize("model", [m for m in MACHINES if _choices(m)], ids=lambda m: m.__name__)
def test_the_table_names_every_state_and_only_states(model):
    choices = _choices(model)
    assert set(model.TRANSITIONS) == choices, "every state needs a row, even one with no way out"
    for frm, targets in model.TRANSITIONS.items():
        assert set(targets) <= choices, f"{frm} -> {set(targets) - choices} names no state"


@pytest.mark.parametrize("model,frm,to", _moves(legal=False))
def test_an_illegal_transition_is_refused_and_changes_nothing(model, frm, to):
    row = _row(model, frm)
    with pytest.raises(IllegalTransition):
        transition(model, row.pk, to, strict=True)
    assert transition(model, row.pk, to) is False  # webhooks and reconciliation: a quiet no-op
    row.refresh_from_db()
    assert getattr(row, state_field(model)) == frm


@pytest.mark.parametrize("model,frm,to", _moves(legal=True))
def test_a_listed_transition_is_applied(model, frm, to):
    row = _row(model, frm)
    assert transition(model, row.pk, to, strict=True) is True
    row.refresh_from_db()
    assert getattr(row, state_field(model)) == to


@pytest.mark.parametrize("model,frm,to", _moves(legal=True))
def test_a_move_from_a_state_the_row_has_left_is_refused(model, frm, to):
    """A run that read `frm` moves nothing once another run has moved the row on."""
    row = _row(model, to)
    assert transition(model, row.pk, to, frm=frm) is False
    row.refresh_from_db()
    assert getattr(row, state_field(model)) == to


@pytest.mark.parametrize("model,frm,to", _moves(legal=True))
def test_a_move_from_a_state_the_caller_has_seen_takes_one_query(model, frm, to, django_assert_num_queries):
    row = _row(model, frm)
    with django_assert_num_queries(1):
        assert transition(model, row.pk, to, seen=frm) is True
    row.refresh_from_db()
    assert getattr(row, state_field(model)) == to


@pytest.mark.parametrize("model,frm,to", _moves(legal=True))
def test_a_state_seen_before_the_row_moved_on_is_checked_again(model, frm, to):
    """The caller's `seen` is only a first guess: a row that has moved since is decided on a fresh read."""
    row = _row(model, to)
    assert transition(model, row.pk, to, seen=frm) is False
    row.refresh_from_db()
    assert getattr(row, state_field(model)) == to
