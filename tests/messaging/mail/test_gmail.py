"""Gmail through google-api-python-client against a local Gmail (GMAIL_API_BASE): the one mail API."""

import base64
import json
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from integrations.models import ProviderCall
from messaging.mail import mime
from messaging.mail.models import MailMessage

from .conftest import ALL_GMAIL, GMAIL, google_conn
from .fake_gmail import make_message

pytestmark = pytest.mark.django_db


def url(conn, rest=""):
    return f"/api/v1/mail/{conn.pk}/{rest}"


class TestReading:
    def test_a_page_of_50_costs_two_http_requests_and_fills_the_cache(self, gmail, user, user_client):
        for n in range(60):
            gmail.add(make_message(n, attachment=n == 59))
        conn = google_conn(user)
        response = user_client.get(url(conn, "messages/"))
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body["messages"]) == 50 and body["next_page_token"] == "50"
        assert len(gmail.requests) == 2  # messages.list + one batch of 50 metadata gets
        assert gmail.requests[1] == ("POST", "/batch/gmail/v1") and len(gmail.batch_parts) == 50
        first = body["messages"][0]
        assert first["id"] == "m00059" and first["subject"] == "Message 59"
        assert first["sender"] == {"name": "Sender 59", "email": "sender59@example.com"}
        assert first["date"].endswith("+00:00") and first["unread"] is True
        assert first["attachments"] == [
            {"id": "att-m00059", "filename": "report.pdf", "mime_type": "application/pdf", "size": 9}
        ]
        assert "raw" not in first  # the provider payload is for staff
        assert MailMessage.objects.count() == 50
        calls = ProviderCall.objects.filter(provider="gmail").order_by("id")
        assert [c.operation for c in calls] == ["messages.list", "messages.get.batch"]
        assert [c.units["quota_units"] for c in calls] == [5, 250]

    def test_listing_asks_for_each_messages_parts_without_their_bodies(self, gmail, user, user_client):
        """format=metadata has no parts (the fake answers it as Gmail does): attachments need format=full, and
        the partial response keeps the bodies out of a page of 50."""
        gmail.add(make_message(1, attachment=True))
        conn = google_conn(user)
        [listed] = user_client.get(url(conn, "messages/")).json()["messages"]
        assert [a["filename"] for a in listed["attachments"]] == ["report.pdf"]
        [query] = gmail.batch_queries
        assert query["format"] == ["full"]
        assert "attachmentId" in query["fields"][0] and "data" not in query["fields"][0]

    def test_a_listed_message_is_cached_with_the_headers_a_list_needs_not_every_header(self, gmail, user, user_client):
        """format=full has no metadataHeaders: the cache keeps From, To, Subject, ... but not the Received trail."""
        message = make_message(1)
        message["payload"]["headers"] += [
            {"name": "Received", "value": "from mx.example.net (203.0.113.7) by mx.google.com"},
            {"name": "Authentication-Results", "value": "mx.google.com; spf=pass smtp.mailfrom=example.com"},
        ]
        gmail.add(message)
        user_client.get(url(google_conn(user), "messages/"))
        names = [h["name"] for h in MailMessage.objects.get().raw["payload"]["headers"]]
        assert names == ["From", "To", "Subject", "Date", "Message-ID"]

    def test_the_list_from_the_cache_reads_as_gmails_own_list(self, gmail, user, user_client):
        """The cache answered no headers (Message-ID, References, In-Reply-To, which a reply needs): only the
        list read from Gmail had them."""
        from datetime import timedelta

        from django.utils import timezone

        from messaging.mail.models import Mailbox
        from messaging.mail.services import mailbox_sync

        gmail.add(make_message(1, attachment=True))
        conn = google_conn(user)
        fresh = user_client.get(url(conn, "messages/")).json()
        Mailbox.objects.filter(connection=conn).update(watch_expires_at=timezone.now() + timedelta(days=6))
        mailbox_sync(connection_id=conn.pk)
        cached = user_client.get(url(conn, "messages/")).json()
        assert (fresh["source"], cached["source"]) == ("provider", "cache")
        assert cached["messages"] == fresh["messages"]
        assert cached["messages"][0]["headers"] == {"message-id": "<m00001@mail.example.com>"}

    def test_staff_see_the_raw_provider_payload(self, gmail, staff_user, staff_client):
        gmail.add(make_message(1))
        conn = google_conn(staff_user)
        body = staff_client.get(url(conn, "messages/m00001/")).json()
        assert body["raw"]["id"] == "m00001" and body["text"] == "Body 1"

    def test_thread_and_attachment_download(self, gmail, user, user_client):
        gmail.add(make_message(1, thread="tx"))
        gmail.add(make_message(2, thread="tx", attachment=True))
        conn = google_conn(user)
        thread = user_client.get(url(conn, "threads/tx/")).json()
        assert [m["id"] for m in thread["messages"]] == ["m00001", "m00002"]
        user_client.get(url(conn, "messages/"))  # caches the attachment's name
        response = user_client.get(url(conn, "messages/m00002/attachments/att-m00002/"))
        assert response.status_code == 200 and response.content == b"%PDF-1.4\n"
        assert response["Content-Type"] == "application/pdf"
        assert 'filename="report.pdf"' in response["Content-Disposition"]

    def test_an_attachment_id_gmail_has_replaced_since_the_list_still_downloads_that_file(
        self, gmail, user, user_client
    ):
        """Gmail's attachment ids are tokens that change between reads of a message and lapse: the id a client
        listed was answered 400 "Invalid attachment token" once the message had been read again (a 502 here).
        The hub finds the listed file's part in a fresh read and downloads it by the id Gmail gives it now."""
        gmail.rotate_attachment_ids = True
        message = make_message(1, attachment=True)
        message["payload"]["parts"].append(
            {"partId": "2", "mimeType": "text/csv", "filename": "figures.csv", "body": {"size": 30}}
        )
        gmail.add(message)
        conn = google_conn(user)
        [listed] = user_client.get(url(conn, "messages/")).json()["messages"]
        csv = next(a for a in listed["attachments"] if a["filename"] == "figures.csv")
        assert user_client.get(url(conn, "messages/m00001/")).status_code == 200  # a new id for each file

        response = user_client.get(url(conn, f"messages/m00001/attachments/{csv['id']}/"))
        assert response.status_code == 200, response.content
        assert response.content == b"%PDF-1.4 m00001 part 2\n"  # the listed file, not the other one
        assert response["Content-Type"] == "text/csv"
        assert 'filename="figures.csv"' in response["Content-Disposition"]

    def test_an_attachment_id_the_hub_never_listed_is_not_guessed(self, gmail, user, user_client):
        gmail.rotate_attachment_ids = True
        gmail.add(make_message(1, attachment=True))
        conn = google_conn(user)
        response = user_client.get(url(conn, "messages/m00001/attachments/ANGjdJ-forged/"))
        assert response.status_code == 502 and response.json()["provider_code"] == "invalidArgument"
        assert [p for _, p in gmail.requests if "attachments" not in p] == []  # no read to look for it

    def test_an_unknown_message_is_a_404(self, gmail, user, user_client):
        conn = google_conn(user)
        response = user_client.get(url(conn, "messages/nope/"))
        assert response.status_code == 404 and response.json()["error"] == "not_found"


class TestSending:
    def test_a_reply_with_an_attachment_threads_and_parses_back(self, gmail, user, user_client):
        original = make_message(7, thread="t-orig")
        original["payload"]["headers"].append({"name": "References", "value": "<root@mail.example.com>"})
        gmail.add(original)
        conn = google_conn(user)
        pdf = b"%PDF-1.4 tiny"
        response = user_client.post(
            url(conn, "messages/send/"),
            {
                "to": ["Sender 7 <sender7@example.com>"],
                "cc": ["boss@example.com"],
                "text": "Thanks!",
                "html": "<p>Thanks!</p>",
                "attachments": [
                    {
                        "filename": "a.pdf",
                        "content_type": "application/pdf",
                        "content_base64": base64.b64encode(pdf).decode(),
                    }
                ],
                "reply_to_message_id": "m00007",
            },
            format="json",
        )
        assert response.status_code == 202, response.content
        assert response.json()["thread_id"] == "t-orig"
        sent = mime.parse(gmail.sent[-1])
        assert sent["In-Reply-To"] == "<m00007@mail.example.com>"
        assert sent["References"] == "<root@mail.example.com> <m00007@mail.example.com>"
        assert sent["Subject"] == "Re: Message 7" and sent["From"] == "ada@example.com"
        assert sent["Cc"] == "boss@example.com"
        assert sent.get_body(preferencelist=("plain",)).get_content().strip() == "Thanks!"
        assert sent.get_body(preferencelist=("html",)).get_content().strip() == "<p>Thanks!</p>"
        [attachment] = list(sent.iter_attachments())
        assert attachment.get_filename() == "a.pdf" and attachment.get_content() == pdf
        call = ProviderCall.objects.get(provider="gmail", operation="messages.send")
        assert call.units["quota_units"] == 100

    @pytest.mark.parametrize("field", ["to", "cc", "bcc"])
    def test_a_malformed_address_is_a_400_naming_the_field_and_nothing_is_sent(self, field, gmail, user, user_client):
        conn = google_conn(user)
        body = {"to": ["ok@example.com"], "text": "x", field: ["ok@example.com", "not an address"]}
        response = user_client.post(url(conn, "messages/send/"), body, format="json")
        assert response.status_code == 400
        assert response.json()["field"] == field and f"{field}[1]" in response.json()["detail"]
        assert gmail.requests == []

    @pytest.mark.parametrize(
        "value", ["a@example.com, b@example.com", "a@example.com; b@example.com", "Ada <a@example.com> b@example.com"]
    )
    @pytest.mark.parametrize("field", ["to", "cc", "bcc"])
    def test_two_addresses_in_one_item_are_a_400_not_a_send_to_the_first_alone(
        self, field, value, gmail, user, user_client
    ):
        conn = google_conn(user)
        body = {"to": ["ok@example.com"], "text": "x", field: ["ok@example.com", value]}
        response = user_client.post(url(conn, "messages/send/"), body, format="json")
        assert response.status_code == 400, (response.status_code, gmail.sent and mime.parse(gmail.sent[-1])[field])
        assert response.json()["field"] == field and f"{field}[1]" in response.json()["detail"]
        assert gmail.requests == []

    def test_a_name_with_a_quoted_comma_is_one_address(self, gmail, user, user_client):
        conn = google_conn(user)
        body = {"to": ['"Lovelace, Ada" <ada@example.org>'], "text": "x"}
        assert user_client.post(url(conn, "messages/send/"), body, format="json").status_code == 202
        assert mime.parse(gmail.sent[-1])["To"] == '"Lovelace, Ada" <ada@example.org>'

    @pytest.mark.parametrize(
        ("field", "body"),
        [
            ("subject", {"subject": "Invoice\u2028Bcc: all@example.com"}),
            ("subject", {"subject": "Invoice\x0bpaid"}),
            ("to", {"to": ["Ada\x85Lovelace <ada@example.org>"]}),
            ("attachments", {"attachments": [{"filename": "a\x0cb.pdf", "content_base64": "eA=="}]}),
        ],
    )
    def test_a_line_break_of_any_kind_in_a_header_is_a_400_naming_the_field_and_nothing_is_sent(
        self, field, body, gmail, user, user_client
    ):
        conn = google_conn(user)
        response = user_client.post(url(conn, "messages/send/"), {"to": ["a@example.com"], **body}, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["field"] == field
        assert gmail.requests == []

    def test_a_reply_to_a_subject_holding_a_line_separator_goes_out_on_one_line(self, gmail, user, user_client):
        original = make_message(8, thread="t-sep")
        # The sender's encoded-word subject decodes to a U+2028; Gmail hands it back decoded.
        subject = next(h for h in original["payload"]["headers"] if h["name"] == "Subject")
        subject["value"] = "Quarterly\u2028report"
        gmail.add(original)
        conn = google_conn(user)
        response = user_client.post(
            url(conn, "messages/send/"),
            {"to": ["sender8@example.com"], "text": "Got it", "reply_to_message_id": "m00008"},
            format="json",
        )
        assert response.status_code == 202, response.content
        assert mime.parse(gmail.sent[-1])["Subject"] == "Re: Quarterly report"

    @pytest.mark.parametrize(
        "content_type",
        [
            "application/pdf; name=invoice.exe",
            'image/png"; x="y',
            "multipart/mixed",
            "pdf",
            "application/pdf, text/html",
        ],
    )
    def test_an_attachment_type_that_is_not_a_files_type_is_a_400_and_nothing_is_sent(
        self, content_type, gmail, user, user_client
    ):
        conn = google_conn(user)
        attachment = {"filename": "invoice.pdf", "content_type": content_type, "content_base64": "JVBERg=="}
        body = {"to": ["a@example.com"], "attachments": [attachment]}
        response = user_client.post(url(conn, "messages/send/"), body, format="json")
        assert response.status_code == 400, (response.status_code, gmail.sent and gmail.sent[-1][-400:])
        assert response.json()["field"] == "attachments" and "attachments[0].content_type" in response.json()["detail"]
        assert gmail.requests == []

    def test_an_uploaded_files_type_that_cannot_be_a_files_goes_as_octet_stream(self, gmail, user, user_client):
        conn = google_conn(user)
        upload = SimpleUploadedFile("notes.bin", b"hello", content_type="multipart/mixed; boundary=x")
        form = {"message": json.dumps({"to": ["a@example.com"], "text": "x"}), "attachments": [upload]}
        assert user_client.post(url(conn, "messages/send/"), form, format="multipart").status_code == 202
        [attachment] = list(mime.parse(gmail.sent[-1]).iter_attachments())
        assert attachment.get_content_type() == "application/octet-stream"
        assert attachment.get_content() == b"hello"

    def test_an_attachment_over_the_limit_is_a_413_before_any_upload(self, gmail, user, user_client, settings):
        settings.MAIL_MAX_ATTACHMENT_BYTES = {"gmail": 1000, "outlook": 1000}
        conn = google_conn(user)
        big = base64.b64encode(b"x" * 1001).decode()
        response = user_client.post(
            url(conn, "messages/send/"),
            {"to": ["a@example.com"], "attachments": [{"filename": "big.bin", "content_base64": big}]},
            format="json",
        )
        assert response.status_code == 413 and response.json()["error"] == "attachment_too_large"
        assert gmail.requests == []

    def test_without_the_send_scope_it_is_a_403_naming_it(self, gmail, user, user_client):
        conn = google_conn(user, scopes=[f"{GMAIL}readonly"])  # gmail.modify would allow sending too
        response = user_client.post(url(conn, "messages/send/"), {"to": ["a@example.com"], "text": "x"}, format="json")
        assert response.status_code == 403
        assert response.json()["error"] == "missing_scope" and f"{GMAIL}send" in response.json()["detail"]
        # Reading still works with what was granted.
        assert user_client.get(url(conn, "labels/")).status_code == 200

    def test_another_users_connection_is_a_404(self, gmail, user, other_user, client_for):
        conn = google_conn(other_user)
        assert client_for(user).get(url(conn, "messages/")).status_code == 404
        assert client_for(user).get("/api/v1/mail/999999/messages/").status_code == 404
        assert gmail.requests == []

    def test_not_configured_is_a_503(self, gmail, user, user_client, settings):
        conn = google_conn(user)
        settings.GOOGLE_CLIENT_ID = ""
        response = user_client.get(url(conn, "messages/"))
        assert response.status_code == 503 and response.json()["error"] == "provider_not_configured"


class TestDraftsLabelsModify:
    def test_drafts_create_list_update_send_delete(self, gmail, user, user_client):
        conn = google_conn(user)
        created = user_client.post(
            url(conn, "drafts/"), {"to": ["a@example.com"], "subject": "Hi", "text": "one"}, format="json"
        )
        assert created.status_code == 201, created.content
        draft_id = created.json()["id"]
        assert mime.parse(base64.urlsafe_b64decode(gmail.drafts[draft_id]["raw"] + "=="))["Subject"] == "Hi"
        listed = user_client.get(url(conn, "drafts/")).json()
        assert [d["id"] for d in listed["drafts"]] == [draft_id]
        updated = user_client.put(
            url(conn, f"drafts/{draft_id}/"), {"to": ["a@example.com"], "subject": "Hi 2", "text": "two"}, format="json"
        )
        assert updated.status_code == 200
        assert mime.parse(base64.urlsafe_b64decode(gmail.drafts[draft_id]["raw"] + "=="))["Subject"] == "Hi 2"
        assert user_client.post(url(conn, f"drafts/{draft_id}/send/")).status_code == 202
        assert mime.parse(gmail.sent[-1])["Subject"] == "Hi 2" and draft_id not in gmail.drafts
        second = user_client.post(url(conn, "drafts/"), {"text": "scratch"}, format="json").json()["id"]
        assert user_client.delete(url(conn, f"drafts/{second}/")).status_code == 204
        assert second not in gmail.drafts

    def test_labels_list_create_rename_delete(self, gmail, user, user_client):
        conn = google_conn(user)
        created = user_client.post(url(conn, "labels/"), {"name": "Receipts"}, format="json").json()
        assert created["name"] == "Receipts"
        assert (
            user_client.patch(url(conn, f"labels/{created['id']}/"), {"name": "Bills"}, format="json").json()["name"]
            == "Bills"
        )
        names = [lb["name"] for lb in user_client.get(url(conn, "labels/")).json()["labels"]]
        assert "Bills" in names
        assert user_client.delete(url(conn, f"labels/{created['id']}/")).status_code == 204
        assert created["id"] not in gmail.labels
        assert user_client.post(url(conn, "labels/"), {"name": ""}, format="json").status_code == 400

    def test_modify_read_star_archive_label_and_trash(self, gmail, user, user_client):
        gmail.add(make_message(3))
        conn = google_conn(user)
        r = user_client.post(
            url(conn, "messages/m00003/modify/"),
            {"read": True, "starred": True, "archive": True, "add_labels": ["Label_9"]},
            format="json",
        )
        assert r.status_code == 200, r.content
        assert set(gmail.messages["m00003"]["labelIds"]) == {"STARRED", "Label_9"}
        user_client.post(url(conn, "messages/m00003/modify/"), {"trash": True}, format="json")
        assert "TRASH" in gmail.messages["m00003"]["labelIds"]
        bad = user_client.post(url(conn, "messages/m00003/modify/"), {}, format="json")
        assert bad.status_code == 400


def test_all_gmail_scopes_constant_matches_the_oauth_config():
    from integrations.oauth import get

    assert list(get("google").capabilities["mail"]) == ALL_GMAIL


def test_a_users_gmail_quota_use_shows_in_their_usage(gmail, user, user_client):
    for n in range(50):
        gmail.add(make_message(n))
    conn = google_conn(user)
    user_client.get(url(conn, "messages/"))
    providers = {p["provider"]: p for p in user_client.get("/api/v1/integrations/usage/").json()["providers"]}
    assert providers["gmail"]["units"]["quota_units"] == 255  # list 5 + 50 gets x 5
    assert providers["gmail"]["units"]["requests"] == 2


def test_staff_see_each_users_gmail_quota_use_in_the_console(gmail, user, user_client, client, staff_user):
    for n in range(50):
        gmail.add(make_message(n))
    user_client.get(url(google_conn(user), "messages/"))
    client.force_login(staff_user)
    listing = client.get("/admin/integrations/usagerollup/", {"provider": "gmail"})
    assert listing.status_code == 200
    [row] = listing.context["cl"].result_list
    assert row.owner == user and row.quota_units == 255
    assert "Provider quota units: 255" in listing.content.decode()


class TestLargeMessages:
    """Above GMAIL_RESUMABLE_UPLOAD_BYTES a message goes up through the media upload endpoint, resumable, in chunks."""

    @pytest.fixture(autouse=True)
    def _small_thresholds(self, settings):
        settings.GMAIL_RESUMABLE_UPLOAD_BYTES = 512 * 1024
        settings.GMAIL_UPLOAD_CHUNK_BYTES = 256 * 1024

    def _form(self, conn, client, rest, data, files, method="post"):
        return getattr(client, method)(
            url(conn, rest),
            {"message": json.dumps(data), "attachments": files},
            format="multipart",
        )

    def test_a_large_message_is_sent_by_resumable_upload_in_chunks_and_parses_back(self, gmail, user, user_client):
        conn = google_conn(user)
        blob = os.urandom(700 * 1024)  # ~950 KB once base64-encoded in the MIME
        upload = SimpleUploadedFile("scan.bin", blob, content_type="application/octet-stream")
        response = self._form(conn, user_client, "messages/send/", {"to": ["a@example.com"], "text": "big"}, [upload])
        assert response.status_code == 202, response.content
        [(path, chunks)] = gmail.upload_log
        assert path == "/gmail/v1/users/me/messages/send"
        assert len(chunks) == 4 and all(c == 256 * 1024 for c in chunks[:-1])
        assert response.json()["id"] == f"sent{len(gmail.sent)}"
        sent = mime.parse(gmail.sent[-1])
        [attachment] = list(sent.iter_attachments())
        assert attachment.get_filename() == "scan.bin" and attachment.get_content() == blob
        assert ("POST", "/gmail/v1/users/me/messages/send") not in gmail.requests  # not the JSON endpoint
        call = ProviderCall.objects.get(provider="gmail", operation="messages.send")
        assert call.units["quota_units"] == 100 and call.outcome == "ok"

    def test_a_small_message_still_goes_as_raw_json(self, gmail, user, user_client):
        conn = google_conn(user)
        upload = SimpleUploadedFile("note.txt", b"tiny", content_type="text/plain")
        response = self._form(conn, user_client, "messages/send/", {"to": ["a@example.com"], "text": "x"}, [upload])
        assert response.status_code == 202, response.content
        assert gmail.upload_log == [] and ("POST", "/gmail/v1/users/me/messages/send") in gmail.requests
        [attachment] = list(mime.parse(gmail.sent[-1]).iter_attachments())
        assert attachment.get_content() == "tiny"

    def test_a_large_draft_is_created_and_updated_by_upload(self, gmail, user, user_client):
        conn = google_conn(user)
        first = SimpleUploadedFile("a.bin", os.urandom(600 * 1024))
        created = self._form(conn, user_client, "drafts/", {"to": ["a@example.com"], "subject": "v1"}, [first])
        assert created.status_code == 201, created.content
        draft_id = created.json()["id"]
        second = SimpleUploadedFile("b.bin", os.urandom(600 * 1024))
        updated = self._form(
            conn, user_client, f"drafts/{draft_id}/", {"to": ["a@example.com"], "subject": "v2"}, [second], "put"
        )
        assert updated.status_code == 200, updated.content
        assert [p for p, _ in gmail.upload_log] == [
            "/gmail/v1/users/me/drafts",
            f"/gmail/v1/users/me/drafts/{draft_id}",
        ]
        saved = mime.parse(base64.urlsafe_b64decode(gmail.drafts[draft_id]["raw"] + "=="))
        assert saved["Subject"] == "v2" and [a.get_filename() for a in saved.iter_attachments()] == ["b.bin"]

    def test_a_message_over_35_mb_as_sent_is_a_413_before_any_upload(self, gmail, user, user_client, settings):
        # Scaled down: the limit is on the message as sent, so files under it can still exceed it once encoded.
        settings.MAIL_MAX_ATTACHMENT_BYTES = {"gmail": 1_000_000, "outlook": 1_000_000}
        conn = google_conn(user)
        upload = SimpleUploadedFile("x.bin", os.urandom(900_000))  # under the limit, ~1.2 MB as base64
        response = self._form(conn, user_client, "messages/send/", {"to": ["a@example.com"]}, [upload])
        assert response.status_code == 413 and response.json()["error"] == "attachment_too_large"
        assert "as sent" in response.json()["detail"]
        assert gmail.requests == []

    def test_the_default_limits_are_the_providers(self):
        from django.conf import settings

        assert settings.MAIL_MAX_ATTACHMENT_BYTES == {"gmail": 35 * 1024 * 1024, "outlook": 150 * 1024 * 1024}

    def test_a_form_without_a_json_message_is_a_400(self, gmail, user, user_client):
        conn = google_conn(user)
        response = user_client.post(url(conn, "messages/send/"), {"message": "not json"}, format="multipart")
        assert response.status_code == 400 and response.json()["field"] == "message"
        assert gmail.requests == []

    def test_a_misnamed_form_part_is_a_400_and_nothing_is_sent(self, gmail, user, user_client):
        conn = google_conn(user)
        upload = SimpleUploadedFile("note.txt", b"tiny", content_type="text/plain")
        response = self._form_with(conn, user_client, {"attachment": [upload]})
        assert response.status_code == 400, response.content
        assert response.json()["fields"] == {"attachment": ["Unknown field; did you mean `attachments`?"]}
        assert gmail.requests == []

    def _form_with(self, conn, client, parts):
        message = json.dumps({"to": ["a@example.com"], "text": "x"})
        return client.post(url(conn, "messages/send/"), {"message": message, **parts}, format="multipart")

    def test_a_form_whose_message_is_nested_too_deeply_is_a_400(self, gmail, user, user_client):
        conn = google_conn(user)
        deep = "[" * 5000 + "]" * 5000
        response = user_client.post(url(conn, "messages/send/"), {"message": deep}, format="multipart")
        assert response.status_code == 400 and response.json()["field"] == "message"
        assert gmail.requests == []


class TestSentIdsAndDraftAttachments:
    def test_a_send_answers_the_sent_message_id_thread_and_message_id(self, gmail, user, user_client):
        response = user_client.post(
            url(google_conn(user), "messages/send/"), {"to": ["a@example.com"], "text": "hi"}, format="json"
        )
        assert response.status_code == 202, response.content
        body = response.json()
        sent = mime.parse(gmail.sent[-1])
        assert body == {"id": "sent1", "thread_id": "tsent1", "message_id": sent["Message-ID"]}
        assert body["message_id"].startswith("<") and body["message_id"].endswith(">")

    def test_a_draft_keeps_its_attachment_through_create_update_and_send(self, gmail, user, user_client):
        conn = google_conn(user)

        def attached(draft_id):
            message = mime.parse(base64.urlsafe_b64decode(gmail.drafts[draft_id]["raw"] + "=="))
            return [(a.get_filename(), a.get_content()) for a in message.iter_attachments()]

        def body(text, content):
            return {
                "to": ["a@example.com"],
                "subject": "Plan",
                "text": text,
                "attachments": [
                    {
                        "filename": "plan.txt",
                        "content_type": "text/plain",
                        "content_base64": base64.b64encode(content).decode(),
                    }
                ],
            }

        created = user_client.post(url(conn, "drafts/"), body("v1", b"first"), format="json")
        assert created.status_code == 201, created.content
        draft_id = created.json()["id"]
        assert attached(draft_id) == [("plan.txt", "first")]
        updated = user_client.put(url(conn, f"drafts/{draft_id}/"), body("v2", b"second"), format="json")
        assert updated.status_code == 200, updated.content
        assert attached(draft_id) == [("plan.txt", "second")]
        sent = user_client.post(url(conn, f"drafts/{draft_id}/send/"))
        assert sent.status_code == 202
        assert sent.json()["id"] and sent.json()["thread_id"]
        [attachment] = list(mime.parse(gmail.sent[-1]).iter_attachments())
        assert attachment.get_content() == "second"
