"""Flights (Duffel)."""

from ._env import env

# Flights (Duffel)
DUFFEL_ACCESS_TOKEN = env.str("DUFFEL_ACCESS_TOKEN", default="")
DUFFEL_API_BASE = env.str("DUFFEL_API_BASE", default="https://api.duffel.com")
