"""The former name of `dev_admin`, kept so existing scripts keep working."""

from .dev_admin import Command  # noqa: F401
