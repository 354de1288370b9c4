"""A changelist action posted with a selected id that is no id of that model (a tampered or stale form).

Django filters `pk__in=<the posted values>` without checking them, so "abc"
for an integer key raised inside the ORM and staff got an HTML 500. Every
admin on the console site answers the changelist again with an error message,
as Django does for "no items selected", and the action changes nothing.
"""

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import ERROR, get_messages
from django.urls import reverse

from integrations.models import Alert
from messaging.models import SmsMessage
from tests.factories import UserFactory
from tests.integrations.factories import AlertFactory
from tests.messaging.factories import SmsFactory

pytestmark = pytest.mark.django_db

NOT_IDS = ["abc", "1.5", "", "99999999999999999999999", "1\x00"]


def post_action(client, model, action, selected):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return client.post(url, {"action": action, "index": "0", ACTION_CHECKBOX_NAME: selected}), url


def error_messages(response):
    return [str(m) for m in get_messages(response.wsgi_request) if m.level == ERROR]


@pytest.mark.parametrize("not_an_id", NOT_IDS)
def test_acknowledging_alerts_with_a_tampered_selection_changes_nothing_and_says_why(client, staff_user, not_an_id):
    alert = AlertFactory()
    client.force_login(staff_user)
    response, url = post_action(client, Alert, "acknowledge_selected", [alert.pk, not_an_id])
    assert (response.status_code, response.url) == (302, url)
    assert error_messages(response) == [
        "The selection was not valid: it names alerts that cannot exist. "
        "Reload the page and select again. No items have been changed."
    ]
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_requeueing_sms_with_a_tampered_selection_changes_nothing(client, staff_user):
    failed = SmsFactory(status="failed", error_code="20429")
    client.force_login(staff_user)
    response, url = post_action(client, SmsMessage, "requeue_failed", [failed.pk, "abc"])
    assert (response.status_code, response.url) == (302, url)
    assert len(error_messages(response)) == 1
    assert SmsMessage.objects.get(pk=failed.pk).status == "failed"


def test_deleting_users_with_a_tampered_selection_deletes_nobody(client, staff_user):
    """auth.User: an AutoField key on an admin from outside the hub, and the confirmation-page path of delete."""
    other = UserFactory()
    client.force_login(staff_user)
    response, url = post_action(client, type(other), "delete_selected", [other.pk, "abc"])
    assert (response.status_code, response.url) == (302, url)
    assert len(error_messages(response)) == 1
    assert type(other).objects.filter(pk=other.pk).exists()


def test_a_valid_selection_still_runs_the_action(client, staff_user):
    alert = AlertFactory()
    client.force_login(staff_user)
    response, _ = post_action(client, Alert, "acknowledge_selected", [str(alert.pk)])
    assert response.status_code == 302 and error_messages(response) == []
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None


def test_every_registered_admin_answers_a_tampered_selection_with_its_changelist(client, staff_user):
    client.force_login(staff_user)
    request = client.get("/admin/").wsgi_request
    failures = []
    for model, model_admin in admin.site._registry.items():
        for action in model_admin.get_actions(request):
            response, url = post_action(client, model, action, ["abc"])
            if response.status_code != 302 or response.url != url or not error_messages(response):
                failures.append(f"{model._meta.label}.{action}: {response.status_code}")
    assert failures == []
