from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations (gateway, webhooks, health)"

    def ready(self):
        from . import signals  # noqa: F401  (Celery request-id propagation, worker heartbeat)
