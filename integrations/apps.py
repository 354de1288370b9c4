from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations (gateway, webhooks, health)"

    def ready(self):
        from django.utils.module_loading import autodiscover_modules

        from . import signals  # noqa: F401  (Celery request-id propagation, worker heartbeat)
        from .auth import throttle  # noqa: F401  (staff alert on a login lockout)
        from .fields import validate_encryption_keys

        # A malformed key must stop every process (web, worker, beat, manage.py)
        # at start-up, not at the first token read hours later.
        validate_encryption_keys()
        # Each app's webhooks.py registers its verifiers and handlers; web and
        # worker processes must both see them.
        autodiscover_modules("webhooks")
