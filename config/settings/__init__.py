"""Settings for the Integration Hub, one module per concern.

Everything comes from the environment through django-environ (and an optional
`.env` file, plus the file named by DJANGO_ENV_FILE, which `make run` uses for
its generated development secrets). Every variable is listed in `.env.example`.

Production is the default: DEBUG is off unless DJANGO_DEBUG=true, and a
missing SECRET_KEY or FIELD_ENCRYPTION_KEYS stops start-up.

A new provider adds one module here (its block of settings, its rows for the
gateway's tables through `provider_defaults`) and one import line below.
"""

from ._env import BASE_DIR, TABLE_DEFAULTS, VAR_DIR, env, merged_table  # noqa: F401
from .ai import *  # noqa: F403
from .auth import *  # noqa: F403
from .base import *  # noqa: F403
from .celery import *  # noqa: F403
from .gateway import *  # noqa: F403
from .mail import *  # noqa: F403
from .messaging import *  # noqa: F403
from .oauth import *  # noqa: F403
from .ops import *  # noqa: F403
from .payments import *  # noqa: F403
from .privacy import *  # noqa: F403
from .scheduling import *  # noqa: F403
from .security import *  # noqa: F403
from .storage import *  # noqa: F403
from .teams import *  # noqa: F403
from .travel import *  # noqa: F403

# The gateway's tables, with the *_JSON environment overrides merged over every
# module's defaults per provider (e.g. RATE_LIMITS_JSON='{"twilio": {"requests": {"rate": 10}}}').
RATE_LIMITS = merged_table(TABLE_DEFAULTS["RATE_LIMITS"], "RATE_LIMITS_JSON")
PROVIDER_TIMEOUTS = merged_table(TABLE_DEFAULTS["PROVIDER_TIMEOUTS"], "PROVIDER_TIMEOUTS_JSON")
PROVIDER_RETRY = merged_table(TABLE_DEFAULTS["PROVIDER_RETRY"], "PROVIDER_RETRY_JSON")
PROVIDER_PRICES = merged_table(TABLE_DEFAULTS["PROVIDER_PRICES"], "PROVIDER_PRICES_JSON")
