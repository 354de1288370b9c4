"""The admin site every app registers with: the console's display rules, applied once for every admin.

`ConsoleAdminConfig` stands in INSTALLED_APPS for django.contrib.admin, so
`admin.site` is a `ConsoleSite`. Every ModelAdmin registered on it gets
`LocalTimes` mixed in: its date-time columns render through
`admin_format.when` (a <time> element that console.js shows in the staff
member's own time zone, with the UTC time on hover), whichever app it belongs
to and whether or not its author remembered. Nothing else about an admin
changes: ordering by the column, its header and its CSS class stay as they were.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from .admin_format import when


def _time_column(field):
    def column(obj):
        return when(getattr(obj, field.name))

    column.__name__ = field.name  # the column keeps its CSS class (column-<name>)
    return admin.display(description=field.verbose_name, ordering=field.name)(column)


class LocalTimes:
    """ModelAdmin mixin: a DateTimeField named in list_display renders as `when(value)`."""

    def _time_columns(self):
        columns = self.__dict__.get("_local_time_columns")
        if columns is None:
            columns = {}
            self.__dict__["_local_time_columns"] = columns
        return columns

    def _localise(self, names):
        if names is None:
            return None
        columns = self._time_columns()
        out = []
        for name in names:
            if isinstance(name, str) and name not in columns:
                try:
                    field = self.model._meta.get_field(name)
                except FieldDoesNotExist:
                    field = None
                columns[name] = _time_column(field) if isinstance(field, models.DateTimeField) else None
            out.append((columns.get(name) or name) if isinstance(name, str) else name)
        return type(names)(out) if isinstance(names, list | tuple) else out

    def get_list_display(self, request):
        return self._localise(super().get_list_display(request))

    def get_list_display_links(self, request, list_display):
        # The same column objects, so a link named by the field's name still finds its column.
        return self._localise(super().get_list_display_links(request, list_display))

    def get_sortable_by(self, request):
        return self._localise(super().get_sortable_by(request))


class ConsoleSite(admin.AdminSite):
    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, LocalTimes):
            admin_class = type(admin_class.__name__, (LocalTimes, admin_class), {"__module__": admin_class.__module__})
        return super().register(model_or_iterable, admin_class, **options)


class ConsoleAdminConfig(AdminConfig):
    default_site = "integrations.admin_site.ConsoleSite"
