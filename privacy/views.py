"""Thin views over privacy.exports and privacy.erasure."""

import contextlib

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from integrations.audit.services import audit_record
from integrations.auth.throttle import password_check
from integrations.errors import DomainError

from . import erasure, exports, storage
from .models import Erasure, Export
from .serializers import (
    EraseCancelSerializer,
    EraseRequestSerializer,
    ErasureSerializer,
    ExportRequestSerializer,
    ExportSerializer,
)


def _export_context(request, items):
    links = {}
    for export in items:
        if export.status == Export.Status.READY:
            # Past its expiry, not purged yet (export_expired): no link, as after the purge.
            with contextlib.suppress(DomainError):
                links[export.pk] = exports.export_link(export=export, build_absolute_uri=request.build_absolute_uri)
    return {"request": request, "links": links}


def _exports_for(user):
    qs = Export.objects.all()
    return qs if user.is_staff else qs.filter(owner=user)


class ExportCreateView(APIView):
    @extend_schema(request=ExportRequestSerializer, responses={202: ExportSerializer}, summary="Export your data")
    def post(self, request):
        """Queue a zip of everything the hub holds about you (staff: about `user`); poll the export for progress."""
        data = ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        subject = data.validated_data.get("user") or request.user
        export, _ = exports.export_request(
            subject=subject,
            requested_by=request.user,
            include_all_versions=data.validated_data["include_all_versions"],
            request=request,
        )
        return Response(ExportSerializer(export, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


class ExportListView(generics.ListAPIView):
    """Your exports, newest first (staff: everyone's)."""

    serializer_class = ExportSerializer

    def get_queryset(self):
        return _exports_for(self.request.user).order_by("-created_at", "-pk")

    def get_serializer_context(self):
        return {"request": self.request, "links": {}}


class ExportDetailView(APIView):
    @extend_schema(responses=ExportSerializer, summary="An export's progress, and its download link once ready")
    def get(self, request, pk):
        export = _exports_for(request.user).filter(pk=pk).first()
        if export is None:
            raise DomainError(404, "not_found", "No such export.")
        return Response(ExportSerializer(export, context=_export_context(request, [export])).data)


class ExportFileView(APIView):
    """Serves an export zip (filesystem storage) to whoever holds a genuine, unexpired signed link."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        auth=[],
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
        summary="Download an export through a hub-signed link (filesystem storage only)",
    )
    def get(self, request, token):
        export = exports.export_link_resolve(token=token)
        response = FileResponse(
            storage.open_local(export.storage_key),
            as_attachment=True,
            filename=f"export-{export.pk}-{export.created_at:%Y%m%d}.zip",
            content_type="application/zip",
        )
        response["Cache-Control"] = "private, no-store"
        response["Content-Security-Policy"] = "sandbox"
        return response


class EraseView(APIView):
    @extend_schema(
        request=EraseRequestSerializer,
        responses={202: ErasureSerializer, 200: ErasureSerializer},
        summary="Erase your account (or, staff, a user's)",
    )
    def post(self, request):
        """Deactivate the account at once (tokens revoked, watches stopped, queued work cancelled) and delete its
        data after PRIVACY_ERASE_GRACE_DAYS. Your own account needs your password; staff may pass `user` and
        `expedite`. Asking again returns the erasure already under way (200)."""
        data = EraseRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        subject = data.validated_data.get("user") or request.user
        row, created = erasure.erase_request(
            subject=subject,
            requested_by=request.user,
            password=data.validated_data.get("password"),
            expedite=data.validated_data["expedite"],
            request=request,
        )
        return Response(ErasureSerializer(row).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class EraseCancelView(APIView):
    """Cancel a pending erasure during its grace period and reactivate the account."""

    # The account being erased is inactive and its API tokens are gone, so its owner proves who they are
    # with username and password in the body (throttled and counted like a login); staff use their token.
    permission_classes = [AllowAny]

    @extend_schema(
        request=EraseCancelSerializer,
        responses={200: ErasureSerializer},
        summary="Cancel a pending erasure (your own, with username and password; staff: any user's)",
    )
    def post(self, request):
        """While the erasure still waits out its grace period: it is cancelled and the account is active again.
        What was stopped at once stays stopped: API tokens stay revoked (sign in again), provider connections
        must be connected again, queued SMS/calls stay cancelled and price watches stay stopped. Once the
        deletion has started the answer is 409 `erasure_under_way`."""
        data = EraseCancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values.get("user") is not None:
            if not request.user.is_authenticated:
                raise DomainError(401, "not_authenticated", "Staff cancel another user's erasure with their token.")
            subject = values["user"]
            actor = request.user
        else:
            if not values.get("username") or not values.get("password"):
                raise DomainError(
                    400, "credentials_required", "Give your username and password to cancel your erasure."
                )
            subject = password_check(request._request, username=values["username"], password=values["password"])
            if subject is None:
                audit_record(action="privacy.erase.cancel", outcome="denied", request=request, reason="password")
                raise DomainError(
                    403, "password_incorrect", "That username and password do not match; nothing changed."
                )
            actor = subject
        row = erasure.erasure_cancel(subject=subject, requested_by=actor, request=request)
        return Response({**ErasureSerializer(row).data, "not_restored": erasure.NOT_RESTORED})


class ErasureDetailView(APIView):
    @extend_schema(responses=ErasureSerializer, summary="An erasure's state and report (staff)")
    def get(self, request, pk):
        """Staff only: the erased user can no longer sign in. The report counts what was deleted where."""
        row = Erasure.objects.filter(pk=pk).first() if request.user.is_staff else None
        if row is None:
            raise DomainError(404, "not_found", "No such erasure.")
        return Response(ErasureSerializer(row).data)
