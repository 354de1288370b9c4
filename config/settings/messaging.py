"""Twilio (SMS and voice)."""

from ._env import env
from .celery import CELERY_BEAT_SCHEDULE

# Twilio
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
# While an auth token is being rotated: the previous token(s), comma-separated, still accepted on
# webhooks (never used for REST calls). Remove once Twilio signs with the new token only.
TWILIO_WEBHOOK_PREVIOUS_AUTH_TOKENS = env.str("TWILIO_WEBHOOK_PREVIOUS_AUTH_TOKENS", default="")
TWILIO_PHONE_NUMBER = env.str("TWILIO_PHONE_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
TWILIO_API_BASE = env.str("TWILIO_API_BASE", default="")
# Inbound calls: business hours when no BusinessHours row is active in admin.
TWILIO_BUSINESS_TIME_ZONE = env.str("TWILIO_BUSINESS_TIME_ZONE", default="UTC")
TWILIO_BUSINESS_HOURS = env.str("TWILIO_BUSINESS_HOURS", default="mon-fri 09:00-17:00")
TWILIO_BUSINESS_HOLIDAYS = env.list("TWILIO_BUSINESS_HOLIDAYS", default=[])
# Messages and calls whose cost is still unbooked this long after their last update get their price fetched.
TWILIO_COST_SWEEP_AFTER_SECONDS = env.int("TWILIO_COST_SWEEP_AFTER_SECONDS", default=3600)
CELERY_BEAT_SCHEDULE["messaging.costs_unbooked_sweep"] = {"task": "messaging.costs_unbooked_sweep", "schedule": 900.0}
TWILIO_VOICEMAIL_GREETING = env.str(
    "TWILIO_VOICEMAIL_GREETING",
    default="Sorry, we cannot take your call right now. Please leave a message after the tone.",
)
