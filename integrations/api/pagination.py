from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination, PageNumberPagination

from integrations.errors import DomainError


class StandardPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class CreatedCursorPagination(CursorPagination):
    """For large, append-mostly tables: no COUNT(*), stable under inserts."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-created_at"

    def decode_cursor(self, request):
        """A cursor that does not decode, or whose position is not a value of the ordering field, is a 400.

        DRF checks only the encoding; a well-encoded cursor carrying `p=garbage`
        reached the database filter and came back as a 500.
        """
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise _invalid_cursor() from None
        if cursor is not None and cursor.position is not None:
            field = self._ordering_field(request)
            try:
                field.to_python(cursor.position)
            except (DjangoValidationError, ValueError, OverflowError):
                raise _invalid_cursor() from None
        return cursor

    def _ordering_field(self, request):
        view = request.parser_context["view"]
        model = view.get_queryset().model
        # paginate_queryset has replaced `ordering` with a tuple by the time the cursor is decoded.
        ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
        return model._meta.get_field(ordering.lstrip("-"))


def _invalid_cursor():
    return DomainError(400, "invalid_cursor", "The cursor is not one this API handed out; start again without it.")
