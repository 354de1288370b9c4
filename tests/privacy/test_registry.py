"""Every model that holds something about a user is declared by some app's privacy holder."""

from django.apps import apps
from django.contrib.auth import get_user_model

from privacy import registry


def _user_related_models():
    """Models with a FK/O2O to the user model, or to a model that has one (transitively): Payment -> Invoice -> owner."""
    user_model = get_user_model()
    related = {user_model}
    changed = True
    while changed:
        changed = False
        for model in apps.get_models():
            if model in related:
                continue
            for f in model._meta.get_fields():
                if f.is_relation and f.concrete and (f.many_to_one or f.one_to_one) and f.related_model in related:
                    related.add(model)
                    changed = True
                    break
    return related - {user_model}


def test_every_model_with_a_user_relation_is_declared_by_a_privacy_holder():
    covered = registry.covered_models()
    missing = sorted(m._meta.label for m in _user_related_models() if m._meta.label_lower not in covered)
    assert not missing, (
        f"{missing} relate to users but no app declares them: add them to the app's privacy.py "
        "(privacy.registry.register(PrivacyHolder(...)), see README 'Privacy')"
    )


def test_the_walk_finds_direct_and_indirect_relations():
    found = {m._meta.label for m in _user_related_models()}
    # direct (owner), through a parent (Payment -> Invoice, MailMessage -> Mailbox -> Connection), no constraint (audit)
    assert {"payments.Invoice", "payments.Payment", "mail.MailMessage", "audit.AuditEvent"} <= found
    assert "messaging.ForwardingRule" not in found


def test_a_model_that_no_holder_declares_fails_the_walk(monkeypatch):
    trimmed = {k: v for k, v in registry.covered_models().items() if k != "travel.pricepoint"}
    monkeypatch.setattr(registry, "covered_models", lambda: trimmed)
    missing = [m for m in _user_related_models() if m._meta.label_lower not in registry.covered_models()]
    assert [m._meta.label for m in missing] == ["travel.PricePoint"]


def test_declared_models_exist_and_kept_models_say_why():
    for holder in registry.holders():
        for label in holder.models:
            assert apps.get_model(label) is not None
        for label, reason in holder.keep.items():
            assert len(reason) > 20, f"{holder.app} keeps {label}: say why in a sentence"


def test_every_app_with_user_data_has_a_holder():
    apps_declared = {h.app for h in registry.holders()}
    assert {
        "payments",
        "documents",
        "messaging",
        "mail",
        "ai",
        "travel",
        "scheduling",
        "integrations",
        "audit",
        "auth",
        "privacy",
    } <= apps_declared
