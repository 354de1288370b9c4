"""Every admin's date-time columns, whichever app: UTC in the markup and on hover, the reader's zone on screen.

The console site mixes `LocalTimes` into every ModelAdmin registered on it, so
a new app's admin gets this without remembering it; these tests fail when an
admin lists a DateTimeField raw (Django would print it in UTC, unmarked).
"""

import datetime as dt

import pytest
from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.test import RequestFactory

from documents.models import Document
from integrations.admin_site import ConsoleSite, LocalTimes
from tests.documents.factories import DocumentFactory

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 3, 1, 12, 34, 56, tzinfo=dt.UTC)


def _raw_time_columns(model, names):
    raw = []
    for name in names:
        if not isinstance(name, str):
            continue
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if isinstance(field, models.DateTimeField):
            raw.append(f"{model._meta.label}.{name}")
    return raw


def test_every_registered_admin_shows_its_date_time_columns_through_when(staff_user):
    assert isinstance(admin.site, ConsoleSite)
    request = RequestFactory().get("/admin/")
    request.user = staff_user
    raw, localised = [], 0
    for model, model_admin in admin.site._registry.items():
        assert isinstance(model_admin, LocalTimes), f"{type(model_admin).__name__} is not on the console's rules"
        names = model_admin.get_list_display(request)
        raw += _raw_time_columns(model, names)
        localised += sum(1 for name in names if callable(name) and name.__qualname__.startswith("_time_column"))
    assert raw == [], f"date-time columns rendered raw (UTC, unmarked): {raw}"
    assert localised > 10  # payments, documents, messaging, ai, travel, audit, tokens ... all go through when()


def test_an_admin_registered_later_gets_the_rule_too():
    class Plain(admin.ModelAdmin):
        list_display = ["id", "created_at", "state"]

    site = ConsoleSite(name="probe")
    site.register(Document, Plain)
    names = site._registry[Document].get_list_display(RequestFactory().get("/"))
    assert names[0] == "id" and names[2] == "state"
    assert callable(names[1]) and names[1].__name__ == "created_at"
    assert names[1].admin_order_field == "created_at" and names[1].short_description == "created at"


def test_a_documents_list_shows_the_time_in_utc_markup_with_utc_on_hover_and_still_sorts(client, staff_user):
    client.force_login(staff_user)
    document = DocumentFactory()
    Document.objects.filter(pk=document.pk).update(created_at=AT)
    r = client.get("/admin/documents/document/")
    html = r.content.decode()
    assert r.status_code == 200
    cell = html[html.index('<td class="field-created_at">') :]
    cell = cell[: cell.index("</td>")]
    assert 'class="console-time" datetime="2026-03-01T12:34:56+00:00"' in cell
    assert 'title="2026-03-01 12:34:56 UTC"' in cell
    assert "sortable column-created_at" in html  # the column header still sorts by the field
    ordered = client.get("/admin/documents/document/", {"o": "-10"})
    assert ordered.status_code == 200 and "2026-03-01T12:34:56+00:00" in ordered.content.decode()
