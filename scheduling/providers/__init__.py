"""Adapters for the video providers; each module is the only one that speaks its vendor's API."""
