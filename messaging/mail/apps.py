from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "messaging.mail"
    label = "mail"
    verbose_name = "Mail (Gmail, Outlook)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from integrations import oauth

        from .services import mailbox_unwatch

        oauth.on_disconnect(mailbox_unwatch)
