"""An Outlook list without a folder leaves out Deleted Items and Junk Email, as Gmail's leaves out TRASH and SPAM.

Graph's GET /me/messages lists every folder, so the same `GET messages/` answered a Gmail user's mail without
trash and spam and an Outlook user's with them. The fake below is Graph's message lists over a few folders, as
strict as Graph where the hub's requests could go wrong: a message names its folder by id (never by the
well-known name), $search takes neither $filter nor $orderby, and a $filter beside $orderby must lead with the
ordered property (InefficientFilter otherwise).
"""

import re
from urllib.parse import unquote, urlencode

import httpx
import pytest

from messaging.mail.models import Mailbox

from .conftest import GRAPH, ms_conn
from .test_outlook import graph_message

pytestmark = [pytest.mark.django_db, pytest.mark.respx(base_url=GRAPH, assert_all_called=False)]

FOLDERS = {"inbox": "AQMkInbox=", "archive": "AQMkArchive=", "deleteditems": "AQMkDeleted=", "junkemail": "AQMkJunk="}


def refused(status, code, message):
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


class FakeGraphFolders:
    def __init__(self, respx_mock, folders=FOLDERS, page_size=50):
        self.folders = dict(folders)
        self.page_size = page_size
        self.messages = []
        self.folder_reads = []
        respx_mock.get("/me/messages").mock(side_effect=self._everywhere)
        respx_mock.get(url__regex=r".*/me/mailFolders/(?P<name>[^/?]+)/messages(\?.*)?$").mock(side_effect=self._in)
        respx_mock.get(url__regex=r".*/me/mailFolders/(?P<name>[^/?]+)(\?.*)?$").mock(side_effect=self._folder)

    def add(self, n, folder, *, subject=None, day=1, read=False, conversation=None):
        self.messages.append(
            graph_message(
                n,
                conversationId=conversation or f"conv{n}",
                parentFolderId=self.folders[folder],
                subject=subject or f"Hello {n}",
                receivedDateTime=f"2026-11-{day:02d}T10:00:00Z",
                isRead=read,
            )
        )

    def _id(self, name):
        name = unquote(name)
        return self.folders.get(name.lower(), name if name in self.folders.values() else None)

    def _folder(self, request, name):
        self.folder_reads.append(name)
        folder_id = self._id(name)
        if folder_id is None:
            return refused(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return httpx.Response(200, json={"id": folder_id})

    def _in(self, request, name):
        folder_id = self._id(name)
        return self._page(request, [m for m in self.messages if m["parentFolderId"] == folder_id])

    def _everywhere(self, request):
        return self._page(request, list(self.messages))

    def _page(self, request, found):
        params = request.url.params
        search, filter_, orderby = params.get("$search"), params.get("$filter"), params.get("$orderby")
        if search is not None and (filter_ is not None or orderby is not None):
            return refused(400, "BadRequest", "$search cannot be combined with $filter or $orderby.")
        if filter_ is not None and orderby is not None and not filter_.startswith(orderby.split()[0]):
            return refused(400, "InefficientFilter", "The restriction or sort order is too complex for this operation.")
        for clause in (filter_ or "").split(" and ") if filter_ else []:
            if re.fullmatch(r"receivedDateTime ge 1900-01-01T00:00:00Z", clause):
                continue
            if match := re.fullmatch(r"conversationId eq '([^']*)'", clause):
                found = [m for m in found if m["conversationId"] == match.group(1)]
            elif match := re.fullmatch(r"parentFolderId ne '([^']*)'", clause):
                found = [m for m in found if m["parentFolderId"] != match.group(1)]
            elif match := re.fullmatch(r"\(isRead eq (true|false)\)", clause):
                found = [m for m in found if m["isRead"] == (match.group(1) == "true")]
            else:
                return refused(400, "BadRequest", f"Invalid filter clause: {clause}")
        if search is not None:
            word = search.strip('"').lower()
            found = [m for m in found if word in m["subject"].lower()]
        found.sort(key=lambda m: m["receivedDateTime"], reverse=True)
        skip = int(params.get("$skip", "0"))
        body = {"value": found[skip : skip + self.page_size]}
        if skip + self.page_size < len(found):
            rest = {k: v for k, v in params.items() if k != "$skip"}
            body["@odata.nextLink"] = f"{GRAPH}{request.url.path[len('/v1.0') :]}?" + urlencode(
                {**rest, "$skip": skip + self.page_size}
            )
        return httpx.Response(200, json=body)


def listed(client, conn, **params):
    response = client.get(f"/api/v1/mail/{conn.pk}/messages/", params)
    assert response.status_code == 200, response.content
    body = response.json()
    return [m["id"] for m in body["messages"]], body["next_page_token"]


@pytest.fixture
def graph(respx_mock, graph_settings):
    fake = FakeGraphFolders(respx_mock)
    fake.add(1, "inbox", day=5)
    fake.add(2, "deleteditems", day=4)
    fake.add(3, "archive", day=3)
    fake.add(4, "junkemail", day=2)
    fake.add(5, "inbox", day=1)
    return fake


def test_a_list_without_a_folder_leaves_out_deleted_items_and_junk_email(graph, user, user_client):
    conn = ms_conn(user)
    assert listed(user_client, conn) == (["AAMk0001", "AAMk0003", "AAMk0005"], None)
    # Asked for by folder, they are listed, as Gmail lists TRASH and SPAM by label.
    assert listed(user_client, conn, label="deleteditems")[0] == ["AAMk0002"]
    assert listed(user_client, conn, label="junkemail")[0] == ["AAMk0004"]
    assert listed(user_client, conn, label=FOLDERS["junkemail"])[0] == ["AAMk0004"]
    # The folders' ids were asked of Graph once, and kept.
    assert listed(user_client, conn)[0] == ["AAMk0001", "AAMk0003", "AAMk0005"]
    assert graph.folder_reads == ["deleteditems", "junkemail"]
    assert Mailbox.objects.get(connection=conn).left_out_folder_ids == [FOLDERS["deleteditems"], FOLDERS["junkemail"]]


def test_a_filter_without_a_folder_leaves_them_out_too(graph, user, user_client):
    """The client's $filter is kept whole beside the hub's clauses, after the ordered property Graph wants first."""
    graph.add(6, "deleteditems", day=6, read=True)
    graph.add(7, "archive", day=7, read=True)
    conn = ms_conn(user)
    assert listed(user_client, conn, filter="isRead eq false")[0] == ["AAMk0001", "AAMk0003", "AAMk0005"]
    assert listed(user_client, conn, filter="isRead eq true")[0] == ["AAMk0007"]
    # In one folder too: a filter without receivedDateTime first was Graph's InefficientFilter (a 502 here).
    assert listed(user_client, conn, filter="isRead eq true", label="deleteditems")[0] == ["AAMk0006"]


def test_a_search_without_a_folder_leaves_them_out_of_every_page(respx_mock, graph_settings, user, user_client):
    """$search takes no $filter, so the hub drops them from each page it reads, the next pages' too."""
    graph = FakeGraphFolders(respx_mock, page_size=2)
    for n, folder in enumerate(["inbox", "junkemail", "deleteditems", "archive", "inbox", "deleteditems"], start=1):
        graph.add(n, folder, subject=f"Invoice {n}", day=10 - n)
    graph.add(9, "inbox", subject="Lunch", day=20)
    conn = ms_conn(user)
    seen, token = listed(user_client, conn, q="invoice")
    pages = 1
    while token:
        more, token = listed(user_client, conn, page_token=token)
        seen += more
        pages += 1
    assert seen == ["AAMk0001", "AAMk0004", "AAMk0005"] and pages == 3
    # A folder's own search keeps its messages, on its next pages too.
    seen, token = listed(user_client, conn, q="invoice", label="deleteditems")
    assert token is None and seen == ["AAMk0003", "AAMk0006"]


def test_a_mailbox_without_junk_email_lists_everything_but_its_deleted_items(
    respx_mock, graph_settings, user, user_client
):
    graph = FakeGraphFolders(respx_mock, folders={k: v for k, v in FOLDERS.items() if k != "junkemail"})
    graph.add(1, "inbox", day=3)
    graph.add(2, "deleteditems", day=2)
    graph.add(3, "archive", day=1)
    conn = ms_conn(user)
    assert listed(user_client, conn)[0] == ["AAMk0001", "AAMk0003"]
    assert Mailbox.objects.get(connection=conn).left_out_folder_ids == [FOLDERS["deleteditems"]]
