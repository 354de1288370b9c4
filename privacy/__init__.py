"""Privacy: what every app holds about a user, and the two things a user may ask for — an export and an erasure.

Each app declares its data in its own `privacy.py` (`privacy.registry.register(PrivacyHolder(...))`),
found by `PrivacyConfig.ready()`. `tests/privacy/test_registry.py` walks every model that relates to
the user model, directly or through a parent row, and fails when no holder names it: an app that
forgets to declare what it stores cannot land.
"""
