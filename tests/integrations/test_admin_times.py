"""Every admin's date-time columns, whichever app: UTC in the markup and on hover, the reader's zone on screen.

The console site mixes `LocalTimes` into every ModelAdmin registered on it, so
a new app's admin gets this without remembering it; these tests fail when an
admin lists a DateTimeField raw (Django would print it in UTC, unmarked).
"""

import datetime as dt
import re
from io import StringIO

import pytest
from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.core.management import call_command
from django.db import models
from django.test import RequestFactory
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from documents.models import Document
from integrations.admin_site import ConsoleSite, LocalTimes
from tests.documents.factories import DocumentFactory, DocumentVersionFactory
from tests.integrations.factories import ConnectionFactory, WebhookEventFactory
from tests.messaging.factories import CallFactory, SmsFactory
from tests.payments.factories import RefundFactory, SubscriptionFactory
from tests.privacy.factories import ErasureFactory, ExportFactory
from tests.scheduling.factories import MeetingFactory
from tests.travel.factories import WatchFactory

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


# Django's own rendering of a date-time in this locale ("March 1, 2026, 12:34 p.m."): UTC, with nothing saying so.
RAW_TIME = re.compile(
    r"\b(?:Jan|Feb|March|April|May|June|July|Aug|Sept|Oct|Nov|Dec)\.? \d{1,2}, \d{4}, (?:\d{1,2}(?::\d\d)? [ap]\.m\.|noon|midnight)"
)


def _content(html):
    """The page's own content (the header and the sidebar carry no model fields)."""
    start = html.find('id="content"')
    return html[start:] if start >= 0 else html


def _seeded_admin(settings):
    """Every part of the console with rows: the demo seeder plus a factory for the models it does not fill."""
    settings.DEBUG = True
    call_command("seed_demo", "--calls", "20", stdout=StringIO(), stderr=StringIO())
    document = DocumentFactory()
    DocumentVersionFactory(document=document, quarantined_at=AT)
    for make in (
        ConnectionFactory,
        WebhookEventFactory,
        SmsFactory,
        CallFactory,
        RefundFactory,
        SubscriptionFactory,
        ExportFactory,
        ErasureFactory,
        MeetingFactory,
        WatchFactory,
    ):
        make()


def test_every_admin_detail_page_shows_its_date_times_through_when(client, staff_user, settings):
    _seeded_admin(settings)
    client.force_login(staff_user)
    raw, checked, localised = {}, 0, 0
    for model in admin.site._registry:
        obj = model._default_manager.order_by("pk").first()
        if obj is None:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
        r = client.get(url)
        assert r.status_code == 200, f"{url}: {r.status_code}"
        html = _content(r.content.decode())
        checked += 1
        found = RAW_TIME.findall(html)
        if found:
            raw[model._meta.label] = found
        localised += 'class="console-time"' in html
    assert raw == {}, f"detail pages showing date-times raw (UTC, unmarked): {raw}"
    assert checked >= 20 and localised >= 12  # calls, alerts, invoices, SMS, documents, meetings ... through when()


def test_a_read_only_field_on_an_editable_page_and_its_inline_show_utc_markup_with_utc_on_hover(client, staff_user):
    client.force_login(staff_user)
    document = DocumentFactory()
    DocumentVersionFactory(document=document, quarantined_at=AT)
    Document.objects.filter(pk=document.pk).update(created_at=AT)
    r = client.get(reverse("admin:documents_document_change", args=[document.pk]))
    html = r.content.decode()
    assert r.status_code == 200
    field = html[html.index("field-created_at") :]
    field = field[: field.index("</div>\n")]
    assert "<label>Created at:</label>" in field  # the field's own label, capitalised as Django does
    assert 'class="console-time" datetime="2026-03-01T12:34:56+00:00" title="2026-03-01 12:34:56 UTC"' in field
    inline = html[html.index('<td class="field-quarantined_at">') :]
    inline = inline[: inline.index("</td>")]
    assert 'datetime="2026-03-01T12:34:56+00:00"' in inline
    assert "Quarantined at" in html  # the inline's column header


def test_a_view_only_page_shows_every_date_time_through_when(client, staff_user):
    """Messages are records: the page is view-only, so Django shows even editable fields read-only."""
    client.force_login(staff_user)
    sms = SmsFactory(sent_at=AT)
    r = client.get(reverse("admin:messaging_smsmessage_change", args=[sms.pk]))
    html = r.content.decode()
    assert r.status_code == 200
    assert 'name="_save"' not in html and 'name="sent_at_0"' not in html  # view only: no widget, nothing to save
    sent = html[html.index("field-sent_at") :]
    sent = sent[: sent.index("</div>\n")]
    assert 'class="console-time" datetime="2026-03-01T12:34:56+00:00"' in sent
    assert not RAW_TIME.search(_content(html))


def test_an_editable_date_time_keeps_its_widget_beside_a_read_only_one(client, staff_user):
    client.force_login(staff_user)
    every = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    task = PeriodicTask.objects.create(name="probe", task="probe.task", interval=every, start_time=AT, last_run_at=AT)
    r = client.get(reverse("admin:django_celery_beat_periodictask_change", args=[task.pk]))
    html = r.content.decode()
    assert r.status_code == 200
    assert 'name="start_time_0" value="2026-03-01"' in html  # editable: Django's date and time inputs
    assert 'name="expires_0"' in html
    last_run = html[html.index("field-last_run_at") :]
    last_run = last_run[: last_run.index("</div>\n")]
    assert 'datetime="2026-03-01T12:34:56+00:00"' in last_run  # read-only: through when()
