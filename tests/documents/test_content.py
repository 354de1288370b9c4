"""File names and types decided from content, without the API around them."""

import hashlib
import io

import pytest

from documents.content import ContentRejected, Sniffed, classify_upload, filename_sanitise

from .conftest import EXE, HTML, PDF, PNG, docx_bytes


def sniff(data):
    try:
        data.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    return Sniffed(
        head=data[:8192], size=len(data), sha256=hashlib.sha256(data).hexdigest(), has_nul=b"\0" in data, utf8=utf8
    )


def classify(data, filename, claimed="application/octet-stream"):
    return classify_upload(
        fileobj=io.BytesIO(data), sniffed=sniff(data), filename=filename, claimed_content_type=claimed
    )


class TestFilenames:
    @pytest.mark.parametrize(
        "raw,expected",
        [
            ("../../etc/passwd", "passwd"),
            ("..\\..\\windows\\system32\\evil.pdf", "evil.pdf"),
            ("/absolute/path/report.pdf", "report.pdf"),
            ("report\x00.pdf", "report.pdf"),
            ("in\nvoice\r.pdf", "invoice.pdf"),
            ("cod\u202eFDP.exe", "codFDP.exe"),  # right-to-left override stripped
            ("..", "document"),
            ("", "document"),
            ("  .hidden  ", "document.hidden"),
            (".pdf", "document.pdf"),
            ("..PDF.", "document.PDF"),
            (".tar.gz", "tar.gz"),
            ("...", "document"),
            ("  report  ", "report"),
            ('a<b>c:"d|e?f*.txt', "a_b_c__d_e_f_.txt"),
            ("CON.txt", "_CON.txt"),
        ],
    )
    def test_names_lose_paths_and_control_characters(self, raw, expected):
        assert filename_sanitise(raw) == expected

    def test_long_names_are_capped_keeping_the_extension(self):
        name = filename_sanitise("x" * 1000 + ".pdf")
        assert len(name) == 200 and name.endswith(".pdf")


class TestTypes:
    def test_a_pdf_is_a_pdf(self):
        assert classify(PDF, "report.pdf", "application/pdf") == "application/pdf"

    def test_an_ooxml_document_is_recognised_from_its_zip_directory(self):
        assert classify(docx_bytes(), "letter.docx").endswith("wordprocessingml.document")

    def test_plain_text_named_csv_is_csv_even_when_windows_claims_excel(self):
        assert classify(b"a,b\n1,2\n", "data.csv", "application/vnd.ms-excel") == "text/csv"

    def test_an_executable_named_pdf_is_refused_naming_both_types(self):
        with pytest.raises(ContentRejected) as err:
            classify(EXE, "invoice.pdf", "application/pdf")
        assert err.value.code == "type_mismatch"
        assert err.value.extra == {"detected_type": "application/x-msdownload", "claimed_type": "application/pdf"}

    def test_an_executable_with_no_claim_is_still_refused_by_its_extension(self):
        with pytest.raises(ContentRejected) as err:
            classify(EXE, "invoice.pdf")
        assert err.value.code == "type_mismatch" and err.value.extra["extension"] == "pdf"

    def test_html_claiming_png_is_refused(self):
        with pytest.raises(ContentRejected) as err:
            classify(HTML, "cat.png", "image/png")
        assert err.value.extra == {"detected_type": "text/html", "claimed_type": "image/png"}

    def test_html_named_as_text_is_not_plain_text(self):
        with pytest.raises(ContentRejected) as err:
            classify(HTML, "notes.txt", "text/plain")
        assert err.value.code == "type_mismatch" and err.value.extra["detected_type"] == "text/html"

    def test_a_png_named_html_is_refused(self):
        with pytest.raises(ContentRejected) as err:
            classify(PNG, "page.html", "image/png")
        assert err.value.code == "type_mismatch"

    def test_an_honest_executable_is_unsupported(self):
        with pytest.raises(ContentRejected) as err:
            classify(EXE, "setup.exe", "application/x-msdownload")
        assert err.value.code == "unsupported_type"

    def test_binary_noise_is_not_text(self):
        with pytest.raises(ContentRejected):
            classify(bytes(range(256)) * 4, "notes.txt", "text/plain")

    def test_an_empty_file_is_refused(self):
        with pytest.raises(ContentRejected) as err:
            classify(b"", "empty.txt", "text/plain")
        assert err.value.code == "empty_file"
