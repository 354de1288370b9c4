from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Scheduling (calendar, video)"

    def ready(self):
        # The meeting <-> calendar hook; Webex in the connections flow; calendar push closed on disconnect.
        from . import consistency, oauth_providers  # noqa: F401
        from .calendars import sync  # noqa: F401
