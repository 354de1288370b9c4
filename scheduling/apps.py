from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Scheduling (calendar, video)"

    def ready(self):
        # The meeting <-> calendar hook; Webex in the connections flow; calendar push, Teams meeting
        # subscriptions and Meet event subscriptions closed on disconnect.
        from . import consistency, meet_events, oauth_providers, teams_lifecycle  # noqa: F401
        from .calendars import sync  # noqa: F401
