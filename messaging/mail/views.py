"""Thin views over messaging.mail.services: one API for Gmail and Outlook under /api/v1/mail/{connection}/."""

import json

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.idempotency import HEADER, idempotent
from integrations.api.strict import unknown_fields
from integrations.errors import DomainError

from . import services
from .serializers import (
    LabelSerializer,
    ModifySerializer,
    OutgoingFormSerializer,
    OutgoingSerializer,
    ThreadQuerySerializer,
)

CONNECTION = OpenApiParameter("connection", int, OpenApiParameter.PATH, description="A mail connection's id")


def _ids(*names):
    return [CONNECTION, *[OpenApiParameter(n, str, OpenApiParameter.PATH) for n in names]]


def _doc(*names, request=None, query=(), responses=OpenApiTypes.OBJECT, operation_id=None):
    return extend_schema(
        parameters=[*_ids(*names), *query], request=request, responses=responses, operation_id=operation_id
    )


def _out(request, item):
    return item.as_dict(staff=request.user.is_staff)


def _valid(serializer_class, request):
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


def _outgoing(request):
    """The message and its uploaded files: JSON (files base64 in `attachments`), or a multipart form whose
    `message` field holds that JSON and whose `attachments` fields are files (for files above the JSON
    body limit, DATA_UPLOAD_MAX_MEMORY_SIZE; uploads spool to disk)."""
    if not (request.content_type or "").startswith("multipart/"):
        return _valid(OutgoingSerializer, request), []
    # A misnamed part (`attachment`) is an error, not a file left out (DRF's data holds the files too).
    unknown = unknown_fields(request.data, OutgoingFormSerializer().fields)
    if unknown:
        raise ValidationError(unknown)
    try:
        data = json.loads(request.data.get("message") or "{}")
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise DomainError(
            400, "invalid_message", "message: the form field holds the message as a JSON object.", field="message"
        )
    serializer = OutgoingSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data, request.FILES.getlist("attachments")


OUTGOING_BODY = {"application/json": OutgoingSerializer, "multipart/form-data": OutgoingFormSerializer}


class MessageListView(APIView):
    @_doc(
        query=[
            OpenApiParameter(
                "q",
                str,
                description="Gmail search syntax; Outlook KQL, sent as $search (quoted and escaped by the hub)",
            ),
            OpenApiParameter("filter", str, description="Outlook only: an OData $filter"),
            OpenApiParameter(
                "label",
                str,
                description=(
                    "Gmail label id / Outlook folder id (or a well-known name: inbox). Omitted: what the provider's "
                    "own list answers, on Gmail all mail but SPAM and TRASH, on Outlook every folder but Deleted Items "
                    "and Junk Email. `source` says "
                    "whether the page came from the hub's cache (Outlook: label=inbox only) or the provider."
                ),
            ),
            OpenApiParameter("page_token", str),
        ],
        operation_id="mail_messages_list",
    )
    def get(self, request, connection):
        p = request.query_params
        page = services.message_list(
            owner=request.user,
            connection_id=connection,
            q=p.get("q", ""),
            label=p.get("label", ""),
            page_token=p.get("page_token", ""),
            filter_=p.get("filter", ""),
        )
        return Response(
            {
                "messages": [_out(request, m) for m in page["messages"]],
                "next_page_token": page["next_page_token"],
                "source": page["source"],
            }
        )


class MessageDetailView(APIView):
    @_doc("message_id")
    def get(self, request, connection, message_id):
        return Response(
            _out(request, services.message_get(owner=request.user, connection_id=connection, message_id=message_id))
        )


class MessageModifyView(APIView):
    @_doc("message_id", request=ModifySerializer)
    def post(self, request, connection, message_id):
        v = _valid(ModifySerializer, request)
        changes = {
            "add": v["add_labels"],
            "remove": v["remove_labels"],
            "read": v["read"],
            "starred": v["starred"],
            "archive": v["archive"],
            "trash": v["trash"],
        }
        result = services.message_modify(
            owner=request.user, connection_id=connection, message_id=message_id, changes=changes
        )
        return Response({"id": result.id, "labels": result.labels})


class AttachmentView(APIView):
    @_doc("message_id", "attachment_id", responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, connection, message_id, attachment_id):
        data, meta = services.attachment_get(
            owner=request.user, connection_id=connection, message_id=message_id, attachment_id=attachment_id
        )
        response = HttpResponse(data, content_type=meta["mime_type"])
        # The sender chose the name: one outside Latin-1 (Cyrillic, CJK, emoji) made Django MIME-encode the
        # whole header into something no browser reads as an attachment; this quotes or RFC 5987-encodes it.
        response["Content-Disposition"] = content_disposition_header(True, meta["filename"])
        response["X-Content-Type-Options"] = "nosniff"
        return response


THREAD_INCLUDE_SPAM_TRASH = OpenApiParameter(
    "include_spam_trash",
    bool,
    description=ThreadQuerySerializer().fields["include_spam_trash"].help_text,
)


class ThreadView(APIView):
    @_doc("thread_id", query=[THREAD_INCLUDE_SPAM_TRASH])
    def get(self, request, connection, thread_id):
        query = ThreadQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        messages = services.thread_get(
            owner=request.user,
            connection_id=connection,
            thread_id=thread_id,
            include_spam_trash=query.validated_data["include_spam_trash"],
        )
        return Response({"id": thread_id, "messages": [_out(request, m) for m in messages]})


class SendView(APIView):
    @_doc(request=OUTGOING_BODY)
    @idempotent
    def post(self, request, connection):
        """Send (to/cc/bcc, subject, text and/or HTML, attachments, reply in a thread). Accepts Idempotency-Key.

        Answers the sent message's id (Outlook: its immutable id in Sent Items; "" for a Mail.Send-only
        connection), thread id and Message-ID. A retry with the same Idempotency-Key after a timeout or a 5xx
        answers the message the first attempt sent, if the provider had it, instead of sending it again."""
        data, files = _outgoing(request)
        sent = services.message_send(
            owner=request.user,
            connection_id=connection,
            data=data,
            files=files,
            idempotency_key=request.headers.get(HEADER, ""),
        )
        return Response(sent, status=202)


class DraftListView(APIView):
    @_doc(query=[OpenApiParameter("page_token", str)])
    def get(self, request, connection):
        page = services.draft_list(
            owner=request.user, connection_id=connection, page_token=request.query_params.get("page_token", "")
        )
        return Response(
            {"drafts": [_out(request, d) for d in page["drafts"]], "next_page_token": page["next_page_token"]}
        )

    @_doc(request=OUTGOING_BODY)
    def post(self, request, connection):
        data, files = _outgoing(request)
        draft = services.draft_create(owner=request.user, connection_id=connection, data=data, files=files)
        return Response(_out(request, draft), status=201)


class DraftDetailView(APIView):
    @_doc("draft_id", request=OUTGOING_BODY)
    def put(self, request, connection, draft_id):
        """Replace the draft: recipients, subject, body and attachments (those not sent again are removed)."""
        data, files = _outgoing(request)
        draft = services.draft_update(
            owner=request.user, connection_id=connection, draft_id=draft_id, data=data, files=files
        )
        return Response(_out(request, draft))

    @_doc("draft_id", responses={204: None})
    def delete(self, request, connection, draft_id):
        services.draft_delete(owner=request.user, connection_id=connection, draft_id=draft_id)
        return Response(status=204)


class DraftSendView(APIView):
    @_doc("draft_id")
    @idempotent
    def post(self, request, connection, draft_id):
        return Response(
            services.draft_send(owner=request.user, connection_id=connection, draft_id=draft_id), status=202
        )


class LabelListView(APIView):
    @_doc()
    def get(self, request, connection):
        labels = services.label_list(owner=request.user, connection_id=connection)
        return Response({"labels": [label.__dict__ for label in labels]})

    @_doc(request=LabelSerializer)
    def post(self, request, connection):
        label = services.label_create(
            owner=request.user, connection_id=connection, name=_valid(LabelSerializer, request)["name"]
        )
        return Response(label.__dict__, status=201)


class LabelDetailView(APIView):
    @_doc("label_id", request=LabelSerializer)
    def patch(self, request, connection, label_id):
        name = _valid(LabelSerializer, request)["name"]
        label = services.label_rename(owner=request.user, connection_id=connection, label_id=label_id, name=name)
        return Response(label.__dict__)

    @_doc("label_id", responses={204: None})
    def delete(self, request, connection, label_id):
        services.label_delete(owner=request.user, connection_id=connection, label_id=label_id)
        return Response(status=204)


class SyncView(APIView):
    @_doc()
    def post(self, request, connection):
        """Turn on push for this mailbox (Gmail watch / Graph subscription) and fill the cache."""
        mailbox = services.push_start(owner=request.user, connection_id=connection)
        return Response(
            {
                "last_synced_at": mailbox.last_synced_at,
                "push_expires_at": mailbox.watch_expires_at or mailbox.subscription_expires_at,
            }
        )
