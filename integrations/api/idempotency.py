"""Client retries are safe: the `Idempotency-Key` header on side-effect POSTs.

    class PayView(APIView):
        @ratelimit(group="payments.pay", rate="5/m")
        @idempotent
        def post(self, request, pk): ...

The first request with a key runs and its response (any status below 500) is
stored for IDEMPOTENCY_TTL_SECONDS (24 h). A repeat with the same key and the
same request returns that response again, marked `Idempotent-Replayed: true`,
without running the view (so without a second provider side effect). The same
key with a different method, path or body is a 422; a repeat while the first
is still running is a 409. Keys are scoped to the user. A 5xx or an exception
leaves no record, so the client may retry with the same key; so does a request
whose process died before it answered (a killed worker, a deploy): once its
claim is older than IDEMPOTENCY_CLAIM_SECONDS (longer than any request may
run), the next retry takes the key over instead of a 409 for the rest of the day.
"""

import datetime as dt
import functools
import hashlib
import json
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from integrations.errors import DomainError
from integrations.models import IdempotencyRecord

HEADER = "Idempotency-Key"

logger = logging.getLogger(__name__)


def _fingerprint(request):
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}\n".encode())
    files = getattr(request, "FILES", {}) or {}
    data = request.data
    if hasattr(data, "lists"):  # QueryDict: every value of a repeated field, not only the last
        data = {k: v[0] if len(v) == 1 else v for k, v in data.lists() if k not in files}
    elif hasattr(data, "items"):
        data = {k: v for k, v in data.items() if k not in files}
    digest.update(json.dumps(data, sort_keys=True, default=str).encode())
    for name in sorted(files):
        # Every file sent under the name (the mail send takes several `attachments`), not only the last.
        for upload in files.getlist(name) if hasattr(files, "getlist") else [files[name]]:
            digest.update(f"\n{name}:{upload.name}:{upload.size}:".encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
    return digest.hexdigest()


def _claim(owner, key, fingerprint):
    """The stored record for a repeat, or None after claiming the key for this request."""
    now = timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)
    IdempotencyRecord.objects.filter(owner=owner, key=key, created_at__lt=cutoff).delete()
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(owner=owner, key=key, fingerprint=fingerprint)
        return None
    except IntegrityError:
        existing = IdempotencyRecord.objects.get(owner=owner, key=key)
    abandoned = now - dt.timedelta(seconds=settings.IDEMPOTENCY_CLAIM_SECONDS)
    if (
        existing.status == IdempotencyRecord.Status.IN_PROGRESS
        and existing.fingerprint == fingerprint
        and existing.created_at < abandoned
    ):
        # Still "running" longer than any request can: its process died (killed, out of memory, a deploy)
        # before it could record an answer or free the key. This retry takes the key over; of two at once,
        # the one whose update matches the old claim does, the other sees the new claim (409).
        taken = IdempotencyRecord.objects.filter(
            pk=existing.pk, status=IdempotencyRecord.Status.IN_PROGRESS, created_at=existing.created_at
        ).update(created_at=now)
        if taken:
            logger.warning(
                "Idempotency-Key taken over from a request that died",
                extra={"owner_id": owner.pk, "claimed_at": existing.created_at.isoformat()},
            )
            return None
        existing.refresh_from_db()
    return existing


def claim(request, key):
    """The finished record to replay for this key, or None once this request holds the key.

    The one place that checks a key and decides between running, replaying and
    refusing: an unusable key is a 400, the same key with a different request a
    422, and a repeat while the first is still running a 409 (with Retry-After),
    whether the view is a plain DRF one (`idempotent`) or async (the AI stream)."""
    if len(key) > 255 or not key.isprintable():
        raise DomainError(
            400, "invalid_idempotency_key", "Idempotency-Key must be printable and at most 255 characters."
        )
    fingerprint = _fingerprint(request)
    existing = _claim(request.user, key, fingerprint)
    if existing is None:
        return None
    if existing.fingerprint != fingerprint:
        raise DomainError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different request; use a new key for a new request.",
        )
    if existing.status == IdempotencyRecord.Status.IN_PROGRESS:
        raise DomainError(
            409,
            "idempotency_key_in_progress",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            headers={"Retry-After": "1"},
        )
    return existing


def idempotent(view_method):
    @functools.wraps(view_method)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if not key or not request.user.is_authenticated:
            return view_method(view, request, *args, **kwargs)
        existing = claim(request, key)
        if existing is not None:
            return Response(
                existing.response_body, status=existing.response_status, headers={"Idempotent-Replayed": "true"}
            )

        records = IdempotencyRecord.objects.filter(owner=request.user, key=key)
        try:
            response = view_method(view, request, *args, **kwargs)
        except BaseException:
            records.delete()
            raise
        if response.status_code >= 500 or not hasattr(response, "data"):
            records.delete()  # nothing replayable (a failure, or a stream)
        else:
            records.update(
                status=IdempotencyRecord.Status.DONE,
                response_status=response.status_code,
                response_body=json.loads(json.dumps(response.data, default=str)),
            )
        return response

    return wrapper


def idempotency_purge(*, older_than=None):
    cutoff = timezone.now() - dt.timedelta(seconds=older_than or settings.IDEMPOTENCY_TTL_SECONDS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
