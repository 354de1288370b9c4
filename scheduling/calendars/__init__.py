"""Calendars (issue 19 points 1-3): the user's Google and Microsoft calendars, their events, sync and push.

A subpackage of `scheduling` rather than an app of its own: the meeting half
listens to its events (`scheduling.signals.calendar_event_changed`,
consistency.py) and availability reads the same connections, so the models
live in scheduling/models.py (one app, one migration history). It is a
package of its own, apart from the meetings' scheduling/services/: the
calendar verbs (services/), the two adapters (google.py over
google-api-python-client, graph/ over httpx), recurrence and time-zone
translation (recurrence.py, times.py) and sync (sync.py) each have a module.
"""
