"""Payments rows move through the shared transition helper (integrations.states)."""

from integrations.states import IllegalTransition, allowed, transition  # noqa: F401
