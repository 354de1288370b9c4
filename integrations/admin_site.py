"""The admin site every app registers with: the console's display rules, applied once for every admin.

`ConsoleAdminConfig` stands in INSTALLED_APPS for django.contrib.admin, so
`admin.site` is a `ConsoleSite`. Every ModelAdmin registered on it gets
`LocalTimes` mixed in: its date-time columns render through
`admin_format.when` (a <time> element that console.js shows in the staff
member's own time zone, with the UTC time on hover), whichever app it belongs
to and whether or not its author remembered. Nothing else about an admin
changes: ordering by the column, its header and its CSS class stay as they were.

Detail pages follow the same rule. Django renders a read-only model field
itself (`display_for_field`: UTC, unmarked) with no hook per field type, so
just before a change page renders, every DateTimeField that Django decided to
show read-only (named in `readonly_fields`, or any field of a page the staff
member may only view), on the page and in its inlines, is swapped for the same
`when()` callable in the fieldsets and the read-only list. The form itself is
built from the field names as before, and an editable date-time field keeps
its widget.

Every ModelAdmin also gets `CheckedSelection`: an action posted with a selected
id that cannot be an id of that model answers the changelist with an error
message instead of a 500.
"""

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import models

from .admin_format import when


def _time_column(field):
    def column(obj):
        return when(getattr(obj, field.name))

    column.__name__ = field.name  # the column keeps its CSS class (column-<name>)
    return admin.display(description=field.verbose_name, ordering=field.name)(column)


def _localised(model, names, columns):
    """`names` with each DateTimeField of `model` replaced by its when() column (kept in `columns`)."""
    out = []
    for name in names:
        if isinstance(name, str) and (model, name) not in columns:
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist:
                field = None
            columns[model, name] = _time_column(field) if isinstance(field, models.DateTimeField) else None
        out.append((columns.get((model, name)) or name) if isinstance(name, str) else name)
    return type(names)(out) if isinstance(names, list | tuple) else out


def _localise_read_only(shown, model, columns, *, all_read_only=False):
    """Swap the read-only date-time fields of an AdminForm or InlineAdminFormSet for when() columns.

    Only names in its read-only list are swapped, there and in its fieldsets:
    an editable field named in the fieldsets keeps its widget. `all_read_only`
    says every field shown is read-only (an inline with no form to edit).
    """
    read_only = list(shown.readonly_fields)
    if all_read_only:
        read_only += [name for name in flatten_fieldsets(shown.fieldsets) if name not in read_only]
    swapped = dict(zip(read_only, _localised(model, read_only, columns), strict=True))
    swapped = {name: column for name, column in swapped.items() if column is not name}
    if not swapped:
        return

    def line(names):
        if isinstance(names, list | tuple):
            return type(names)(swapped.get(name, name) for name in names)
        return swapped.get(names, names)

    shown.readonly_fields = type(shown.readonly_fields)(line(read_only))
    shown.fieldsets = [
        (title, {**options, "fields": [line(names) for names in options.get("fields", ())]})
        for title, options in shown.fieldsets
    ]


class LocalTimes:
    """ModelAdmin mixin: a DateTimeField in list_display, or shown read-only on a detail page, renders as `when()`."""

    def _time_columns(self):
        columns = self.__dict__.get("_local_time_columns")
        if columns is None:
            columns = {}
            self.__dict__["_local_time_columns"] = columns
        return columns

    def _localise(self, names):
        if names is None:
            return None
        return _localised(self.model, names, self._time_columns())

    def get_list_display(self, request):
        return self._localise(super().get_list_display(request))

    def get_list_display_links(self, request, list_display):
        # The same column objects, so a link named by the field's name still finds its column.
        return self._localise(super().get_list_display_links(request, list_display))

    def get_sortable_by(self, request):
        return self._localise(super().get_sortable_by(request))

    def render_change_form(self, request, context, *args, **kwargs):
        # By now Django has decided what is read-only (declared, or the whole page when it may only be viewed).
        columns = self._time_columns()
        if context.get("adminform") is not None:
            _localise_read_only(context["adminform"], self.model, columns)
        for inline in context.get("inline_admin_formsets") or ():
            # Django shows an inline's rows read-only without listing them when nothing in it may be edited.
            frozen = not (inline.has_change_permission or inline.has_add_permission or inline.formset.extra_forms)
            _localise_read_only(inline, inline.opts.model, columns, all_read_only=frozen)
        return super().render_change_form(request, context, *args, **kwargs)


def _is_key(field, value):
    """Whether `value`, as posted, can be a value of the primary key `field` (not whether such a row exists)."""
    try:
        field.run_validators(field.to_python(value))  # the validators hold the column's range
    except (ValidationError, ValueError, TypeError):
        return False
    # PostgreSQL refuses NUL in any text, so a text key posted with one would fail inside the query.
    return "\x00" not in str(value)


class CheckedSelection:
    """ModelAdmin mixin: an action on selected ids that cannot be ids of this model changes nothing and says so.

    Django filters `pk__in=<the posted ids>` unchecked: "abc" for an integer
    key raises inside the ORM (a 500), and an integer beyond the column's range
    is silently dropped, so the action would run on the rest of a selection
    that was not what the page offered. A form like that was tampered with or
    built by hand; the whole action is refused, as Django refuses an empty
    selection, and staff are back on the changelist with the reason.
    """

    def response_action(self, request, queryset):
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if not all(_is_key(self.opts.pk, value) for value in selected):
            message = (
                f"The selection was not valid: it names {self.opts.verbose_name_plural} that cannot exist. "
                "Reload the page and select again. No items have been changed."
            )
            self.message_user(request, message, messages.ERROR)
            return None  # changelist_view answers with a redirect back to the changelist
        return super().response_action(request, queryset)


class ConsoleSite(admin.AdminSite):
    """Every ModelAdmin registered here gets the console's rules mixed in, whoever wrote it."""

    RULES = (LocalTimes, CheckedSelection)

    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = admin_class or admin.ModelAdmin
        missing = tuple(rule for rule in self.RULES if not issubclass(admin_class, rule))
        if missing:
            admin_class = type(admin_class.__name__, (*missing, admin_class), {"__module__": admin_class.__module__})
        return super().register(model_or_iterable, admin_class, **options)


class ConsoleAdminConfig(AdminConfig):
    default_site = "integrations.admin_site.ConsoleSite"
