from django.apps import AppConfig


class AiConfig(AppConfig):
    name = "ai"
    verbose_name = "AI gateway"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from .models import AiBudget
        from .usage import limits_forget

        post_save.connect(limits_forget, sender=AiBudget, dispatch_uid="ai_limits_forget_save")
        post_delete.connect(limits_forget, sender=AiBudget, dispatch_uid="ai_limits_forget_delete")
