"""Two hub users' rows for one Outlook calendar subscribing at once, on real PostgreSQL and Redis.

Before a Graph subscription is made, the user's subscriptions on the calendar at the hub's URL that no row records
are deleted (a create whose answer was lost had made them). Graph lists the subscriptions of both hub users'
connections to one Outlook account to either, so that cleanup must not run while the other's create is out."""

import threading

import pytest

from scheduling.models import Calendar

from ..messaging.mail.test_mailbox_lock import in_thread
from .conftest import _connection

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
CALS = "/api/v1/calendars/"


def test_two_users_rows_for_one_outlook_calendar_subscribing_at_once_keep_both_subscriptions(
    mscal, mscal_conn, user, other_user, client_for, monkeypatch
):
    """The second row's cleanup ran while the first row's create was in flight: it found the first's subscription
    made and not yet recorded, and deleted it; the first row then recorded a subscription Graph no longer had, and
    its calendar got no push until the renewal found it gone. The lock per calendar row did not see the other row."""
    _connection(other_user, "microsoft_oauth", "Grace@Contoso.com", mscal.token, ["Calendars.Read"], ["calendar"])
    [first] = client_for(user).get(CALS).json()["results"]
    [second] = client_for(other_user).get(CALS).json()["results"]
    assert first["id"] != second["id"]
    answer_to = mscal._subscriptions
    created, deleted_meanwhile = threading.Event(), threading.Event()

    def subscriptions(method, rest, body):
        answer = answer_to(method, rest, body)
        if method == "DELETE":
            deleted_meanwhile.set()
        elif method == "POST" and not created.is_set():
            created.set()
            # Graph has made it; its answer is still on the way while the other row's watch runs: without the
            # account's lock its cleanup deletes this one, with it it waits until this one is recorded.
            deleted_meanwhile.wait(3)
        return answer

    monkeypatch.setattr(mscal, "_subscriptions", subscriptions)
    errors, answers = [], []
    threads = [in_thread(lambda: answers.append(client_for(user).post(f"{CALS}{first['id']}/watch/")), errors)]
    assert created.wait(10)
    threads.append(
        in_thread(lambda: answers.append(client_for(other_user).post(f"{CALS}{second['id']}/watch/")), errors)
    )
    for thread in threads:
        thread.join(30)

    assert errors == [] and [a.status_code for a in answers] == [200, 200]
    recorded = [Calendar.objects.get(pk=c["id"]).subscription_id for c in (first, second)]
    assert not deleted_meanwhile.is_set()
    assert sorted(mscal.subscriptions) == sorted(recorded) and len(set(recorded)) == 2
