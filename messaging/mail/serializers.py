from rest_framework import serializers

from integrations.api.strict import StrictSerializer


class AttachmentInSerializer(StrictSerializer):
    filename = serializers.CharField(max_length=255)
    content_type = serializers.CharField(max_length=255, required=False, allow_blank=True)
    content_base64 = serializers.CharField(help_text="The file, base64-encoded.")


class OutgoingSerializer(StrictSerializer):
    to = serializers.ListField(
        child=serializers.CharField(max_length=998), required=False, default=list, max_length=500
    )
    cc = serializers.ListField(
        child=serializers.CharField(max_length=998), required=False, default=list, max_length=500
    )
    bcc = serializers.ListField(
        child=serializers.CharField(max_length=998), required=False, default=list, max_length=500
    )
    subject = serializers.CharField(max_length=998, required=False, allow_blank=True, default="")
    text = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    html = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    attachments = AttachmentInSerializer(many=True, required=False, default=list)
    reply_to_message_id = serializers.CharField(
        max_length=255, required=False, allow_blank=True, default="", help_text="Reply in this message's thread."
    )


class OutgoingFormSerializer(StrictSerializer):
    """The multipart form of a message (documentation of the form; the view parses it)."""

    message = serializers.CharField(
        help_text="The message as JSON, in the shape of the JSON body (attachments optional)."
    )
    attachments = serializers.ListField(child=serializers.FileField(), required=False, help_text="Files to attach.")


class ModifySerializer(StrictSerializer):
    read = serializers.BooleanField(required=False, allow_null=True, default=None)
    starred = serializers.BooleanField(required=False, allow_null=True, default=None)
    archive = serializers.BooleanField(required=False, default=False)
    trash = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="true: trash; false: restore"
    )
    add_labels = serializers.ListField(child=serializers.CharField(max_length=255), required=False, default=list)
    remove_labels = serializers.ListField(child=serializers.CharField(max_length=255), required=False, default=list)

    def validate(self, data):
        if not any(
            [
                data["read"] is not None,
                data["starred"] is not None,
                data["archive"],
                data["trash"] is not None,
                data["add_labels"],
                data["remove_labels"],
            ]
        ):
            raise serializers.ValidationError(
                "Say what to change: read, starred, archive, trash, add_labels or remove_labels."
            )
        return data


class LabelSerializer(StrictSerializer):
    name = serializers.CharField(max_length=225)


class ThreadQuerySerializer(serializers.Serializer):
    include_spam_trash = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "true: every message of the conversation, those in the bin and spam too (Gmail's TRASH and SPAM, "
            "Outlook's Deleted Items and Junk Email), which the thread leaves out otherwise, as the list without "
            "`label` does"
        ),
    )
