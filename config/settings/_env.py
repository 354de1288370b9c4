"""Settings helpers shared by every module of config.settings.

Everything comes from the environment through django-environ (and an optional
`.env` file, plus the file named by DJANGO_ENV_FILE, which `make run` uses for
its generated development secrets). Every variable is listed in `.env.example`.
Any of them may instead come from a file (`NAME_FILE`) or from AWS Secrets
Manager (`SECRETS_MANAGER_ARN`): see `_secrets.py`.

Production is the default: DEBUG is off unless DJANGO_DEBUG=true, and a
missing SECRET_KEY or FIELD_ENCRYPTION_KEYS stops start-up.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from ._secrets import SecretsMapping, apply_secrets_manager

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
env.ENVIRON = SecretsMapping()
# Values already in the environment win over both files.
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")
_env_file = env.str("DJANGO_ENV_FILE", default="")
if _env_file:
    environ.Env.read_env(BASE_DIR / _env_file)
# Last, so the environment, the env files and NAME_FILE all win over it.
SECRETS_FROM_MANAGER = apply_secrets_manager()


def env_bool(name, default):
    """A strict boolean: a typo such as DJANGO_DEBUG=ture stops start-up."""
    raw = env.str(name, default="")
    if raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def merged_table(defaults, env_name):
    """A JSON object from the environment merged over `defaults`, one level deep per key.

    Empty (`NAME=` as .env.example lists it, which compose's env_file passes on) is no override, not invalid JSON.
    """
    overrides = env.json(env_name, default={}) if env.str(env_name, default="").strip() else {}
    if not isinstance(overrides, dict):
        raise ImproperlyConfigured(f"{env_name} must be a JSON object")
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in defaults.items()}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


# The gateway's per-provider tables. Each settings module adds its providers'
# rows with provider_defaults(); config.settings merges the *_JSON environment
# overrides over them once every module has spoken.
TABLE_DEFAULTS = {"RATE_LIMITS": {}, "PROVIDER_TIMEOUTS": {}, "PROVIDER_RETRY": {}, "PROVIDER_PRICES": {}}


def provider_defaults(**tables):
    """Add default rows (per provider) to the gateway's tables, e.g. provider_defaults(RATE_LIMITS={"zoom": ...})."""
    for table, rows in tables.items():
        if table not in TABLE_DEFAULTS:
            raise ImproperlyConfigured(f"provider_defaults: unknown table {table!r}")
        TABLE_DEFAULTS[table].update(rows)
