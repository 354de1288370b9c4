from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "messaging.mail"
    label = "mail"
    verbose_name = "Mail (Gmail, Outlook)"
    default_auto_field = "django.db.models.BigAutoField"
