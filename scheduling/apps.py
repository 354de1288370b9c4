from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Scheduling (calendar, video)"

    def ready(self):
        from . import consistency, oauth_providers  # noqa: F401 - the calendar hook; Webex in the connections flow
