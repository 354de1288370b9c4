from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Scheduling (calendar, video)"

    def ready(self):
        from . import oauth_providers  # noqa: F401 - registers Webex with the connections flow
