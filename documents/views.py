"""Thin views: check the request, call one service, answer.

Uploads stream through SizeLimitUploadHandler (documents.uploads), installed
before authentication so that even the CSRF check of a session login, which
reads the form, parses the body under the limit.
"""

from django.conf import settings
from django.core.files.uploadhandler import load_handler
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.api.idempotency import idempotent
from integrations.api.ratelimit import ratelimit
from integrations.audit.services import audit_record
from integrations.errors import DomainError

from . import selectors, services
from .providers import LocalBackend
from .serializers import (
    DocumentSerializer,
    DocumentUsageSerializer,
    DownloadLinkSerializer,
    UploadSerializer,
    VersionSerializer,
)
from .uploads import SizeLimitUploadHandler


def upload_rate(group, request):
    return settings.DOCUMENT_UPLOAD_RATE


def _limit_for(request):
    return services.upload_limit_for(getattr(request, "user", None))


class StreamingUploadMixin:
    """Parses multipart bodies through the size-limit handler; `received_upload()` gives the file."""

    parser_classes = [MultiPartParser]

    def initial(self, request, *args, **kwargs):
        if request.method == "POST":
            django_request = request._request
            self.size_limit = SizeLimitUploadHandler(django_request, _limit_for)
            django_request.upload_handlers = [
                self.size_limit,
                *(load_handler(path, django_request) for path in settings.FILE_UPLOAD_HANDLERS),
            ]
        super().initial(request, *args, **kwargs)

    def received_upload(self, request):
        upload = request.FILES.get("file")
        if self.size_limit.exceeded is not None:
            raise self.size_limit.exceeded
        if upload is None:
            raise DomainError(400, "file_required", "Send the file as multipart/form-data in a field named `file`.")
        return upload, self.size_limit.sniffed["file"]


class DocumentListView(StreamingUploadMixin, generics.ListAPIView):
    serializer_class = DocumentSerializer

    def get_queryset(self):
        return selectors.document_list_for_owner(owner=self.request.user)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={201: DocumentSerializer},
        summary="Upload a document (private; type checked from content; size limited while streaming)",
    )
    @ratelimit(group="documents.upload", rate=upload_rate)
    @idempotent
    def post(self, request):
        upload, sniffed = self.received_upload(request)
        document = services.document_create(owner=request.user, upload=upload, sniffed=sniffed)
        document = selectors.document_get_for_owner(owner=request.user, pk=document.pk)
        return Response(DocumentSerializer(document).data, status=status.HTTP_201_CREATED)


class DocumentDetailView(generics.RetrieveDestroyAPIView):
    serializer_class = DocumentSerializer

    def get_object(self):
        return selectors.document_get_for_owner(owner=self.request.user, pk=self.kwargs["pk"])

    def perform_destroy(self, instance):
        services.document_delete(document=instance)


class DocumentVersionListView(StreamingUploadMixin, generics.ListAPIView):
    serializer_class = VersionSerializer
    pagination_class = None  # a document has a handful of versions

    def get_queryset(self):
        document = selectors.document_get_for_owner(owner=self.request.user, pk=self.kwargs["pk"])
        return selectors.version_list(document=document).select_related("document")

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={201: VersionSerializer},
        summary="Upload a new version of a document; it becomes the current one",
    )
    @ratelimit(group="documents.upload", rate=upload_rate)
    @idempotent
    def post(self, request, pk):
        document = selectors.document_get_for_owner(owner=request.user, pk=pk)
        upload, sniffed = self.received_upload(request)
        version = services.version_add(document=document, upload=upload, sniffed=sniffed)
        version = selectors.version_get(document=document, number=version.number)
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)


class DocumentDownloadView(APIView):
    @extend_schema(
        responses={200: DownloadLinkSerializer},
        parameters=[OpenApiParameter("version", int, description="A version number; default the current one.")],
        summary="A short-lived signed download URL",
    )
    def get(self, request, pk, number=None):
        document = selectors.document_get_for_owner(owner=request.user, pk=pk)
        if number is None:
            # An empty ?version= is no version asked for; a 0 from the path or the query is a version (none has it).
            number = request.query_params.get("version") or None
        if number is not None:
            try:
                version = selectors.version_get(document=document, number=int(number))
            except ValueError:
                raise DomainError(400, "invalid", "version must be a version number.") from None
        else:
            version = document.current_version
        link = services.download_link(version=version, build_absolute_uri=request.build_absolute_uri)
        # Issuing the signed link is the download (and the share): whoever holds it can fetch the file.
        audit_record(action="document.download", request=request, target=document, version=version.number)
        return Response(DownloadLinkSerializer(link).data)


class DocumentVersionDownloadView(DocumentDownloadView):
    @extend_schema(responses={200: DownloadLinkSerializer}, summary="A short-lived signed URL for one version")
    def get(self, request, pk, number):
        return super().get(request, pk, number)


class DocumentVersionRestoreView(APIView):
    @extend_schema(request=None, responses={200: DocumentSerializer}, summary="Make an older version current again")
    def post(self, request, pk, number):
        document = selectors.document_get_for_owner(owner=request.user, pk=pk)
        version = selectors.version_get(document=document, number=number)
        services.version_restore(document=document, version=version)
        document = selectors.document_get_for_owner(owner=request.user, pk=pk)
        return Response(DocumentSerializer(document).data)


class DocumentUsageView(APIView):
    @extend_schema(
        responses={200: DocumentUsageSerializer}, summary="Bytes stored, quota and monthly storage cost estimate"
    )
    def get(self, request):
        return Response(DocumentUsageSerializer(services.usage_for_owner(owner=request.user)).data)


class DocumentFileView(APIView):
    """Serves a local-backend file to whoever holds a genuine, unexpired signed link."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        auth=[],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        summary="Download a file through a hub-signed link (local storage only)",
    )
    def get(self, request, token):
        version = services.local_link_resolve(token=token)
        response = FileResponse(
            LocalBackend().open(version.storage_key),
            as_attachment=True,
            filename=version.filename,
            content_type=version.content_type,
        )
        response["Cache-Control"] = "private, no-store"
        # Even if a browser were talked into rendering it, the file runs in a sandbox.
        response["Content-Security-Policy"] = "sandbox"
        return response
