from django.db.models import Count
from django.http import Http404

from .models import Document, DocumentVersion


def document_list_for_owner(*, owner):
    return (
        Document.objects.filter(owner=owner, state=Document.State.ACTIVE)
        .select_related("current_version")
        .annotate(versions_count=Count("versions"))
        .order_by("-created_at", "-id")
    )


def document_get_for_owner(*, owner, pk):
    """The owner's live document; anyone else's (or a deleted one) is a 404."""
    document = document_list_for_owner(owner=owner).filter(pk=pk).first()
    if document is None:
        raise Http404
    return document


def version_list(*, document):
    return DocumentVersion.objects.filter(document=document).order_by("-number")


def version_get(*, document, number):
    version = DocumentVersion.objects.filter(document=document, number=number).select_related("document").first()
    if version is None:
        raise Http404
    return version
