"""Logins and API tokens: throttled logins (django-axes) and hashed, expiring tokens."""

import datetime as dt

from ._env import env

# django-axes watches every authenticate() call (admin login, POST /api/v1/auth/token/):
# after AXES_FAILURE_LIMIT failures from one IP, or for one username from any
# IP, logins are refused with 429 + Retry-After until the cool-off has passed
# since the last failure. A success resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = dt.timedelta(seconds=env.int("LOGIN_LOCKOUT_SECONDS", default=900))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "integrations.auth.throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "integrations.auth.throttle.client_ip"
# A successful login is already in Django's own records; log only failures.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
# Proxies in front of the hub that append to X-Forwarded-For (0: use REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# API tokens live this many days unless the client asks for fewer (0 = never expire is not offered).
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)
API_TOKEN_MAX_TTL_DAYS = env.int("API_TOKEN_MAX_TTL_DAYS", default=365)
