from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class PrivacyConfig(AppConfig):
    name = "privacy"
    verbose_name = "Privacy (exports and erasures)"

    def ready(self):
        # Each installed app's `privacy.py` registers its holder; Django's own apps
        # (auth, admin, sessions) and axes are declared here, since they are not ours to edit.
        from . import contrib  # noqa: F401

        autodiscover_modules("privacy")

        from integrations.webhooks import webhook_batch_finisher

        from .erasure import webhooks_redact_late

        webhook_batch_finisher("privacy.late_webhooks")(webhooks_redact_late)
