from django.contrib import admin

from .models import Mailbox, MailMessage, MailSend


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    list_display = ("connection", "last_synced_at", "watch_expires_at", "subscription_expires_at", "full_sync_at")
    raw_id_fields = ("connection",)
    # The Graph clientState is a shared secret: never on a page.
    exclude = ("client_state",)
    readonly_fields = (
        "history_id",
        "delta_link",
        "inbox_folder_id",
        "left_out_folder_ids",
        "subscription_id",
        "last_synced_at",
        "full_sync_at",
    )


@admin.register(MailMessage)
class MailMessageAdmin(admin.ModelAdmin):
    list_display = ("external_id", "mailbox", "subject", "sent_at", "unread")
    list_filter = ("unread", "starred")
    search_fields = ("external_id", "thread_id", "subject")
    raw_id_fields = ("mailbox",)
    show_full_result_count = False


@admin.register(MailSend)
class MailSendAdmin(admin.ModelAdmin):
    """Sends made with an Idempotency-Key: "ambiguous" means the next retry looks the Message-ID up in Sent.

    View only: the row is what keeps a retry from sending twice; staff editing its doubt or digests, or adding
    one, could make the next retry send again or refuse a real one. (It still goes with its connection.)
    """

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    list_display = ("message_id", "connection", "send_doubt", "external_id", "sent_at", "created_at")
    list_filter = ("send_doubt",)
    search_fields = ("message_id", "external_id")
    raw_id_fields = ("connection",)
    readonly_fields = (
        "key_digest",
        "message_id",
        "draft_id",
        "external_id",
        "thread_id",
        "sent_at",
        "created_at",
        "updated_at",
    )
    show_full_result_count = False
