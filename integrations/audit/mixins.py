"""Audit for admin edits: a ModelAdmin mixin for the models whose changes move money or access.

    class InvoiceAdmin(AuditedAdminMixin, admin.ModelAdmin):
        audit_name = "invoice"

Every add, change and delete made in admin appends an AuditEvent
(`admin.invoice.change`, ...) naming the changed fields with their old and
new values; encrypted fields (tokens, secrets) are named, never shown.
"""

from ..fields import EncryptedTextField
from .services import audit_record


def _shown(field, value):
    if isinstance(field, EncryptedTextField):
        return "[set]" if value else "[empty]"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class AuditedAdminMixin:
    audit_name = ""
    # {field name: fn(value) -> what the trail shows}: for a plain field that holds a credential (a Slack URL).
    audit_shown = {}

    def _audit_name(self):
        return self.audit_name or self.model._meta.model_name

    def save_model(self, request, obj, form, change):
        changed = {}
        if change and obj.pk is not None:
            before = type(obj)._default_manager.filter(pk=obj.pk).first()
            for name in form.changed_data if form is not None else []:
                try:
                    field = obj._meta.get_field(name)
                except Exception:  # noqa: BLE001 - a form-only field
                    continue
                if not getattr(field, "concrete", False) or field.many_to_many:
                    continue
                old = getattr(before, field.attname, None) if before is not None else None
                shown = self.audit_shown.get(name)
                new = getattr(obj, field.attname)
                changed[name] = [shown(old), shown(new)] if shown else [_shown(field, old), _shown(field, new)]
        super().save_model(request, obj, form, change)
        audit_record(
            action=f"admin.{self._audit_name()}.{'change' if change else 'add'}",
            request=request,
            target=obj,
            changes=changed,
        )

    def delete_model(self, request, obj):
        audit_record(action=f"admin.{self._audit_name()}.delete", request=request, target=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            audit_record(action=f"admin.{self._audit_name()}.delete", request=request, target=obj)
        super().delete_queryset(request, queryset)
