"""Fixtures for the documents tests: local storage in a temp dir, S3 on moto,
Celery tasks run inline, and a tiny clamd-protocol server on 127.0.0.1."""

import io
import socket
import struct
import threading
import zipfile

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from moto import mock_aws

from config.celery import app as celery_app
from documents import providers

BUCKET = "hub-documents"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489") + b"\x00" * 64
EXE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + b"\x00" * 200
    + b"This program cannot be run in DOS mode"
)
HTML = b"<!DOCTYPE html><html><body><script>fetch('/steal?c='+document.cookie)</script></body></html>"


def docx_bytes():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("_rels/.rels", "<Relationships/>")
        z.writestr("word/document.xml", "<w:document/>")
    return buf.getvalue()


def upload_file(name, content, content_type="application/octet-stream"):
    return SimpleUploadedFile(name, content, content_type=content_type)


@pytest.fixture(autouse=True)
def documents_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.S3_BUCKET = ""
    settings.AWS_ACCESS_KEY_ID = ""
    settings.AWS_SECRET_ACCESS_KEY = ""
    settings.AWS_S3_ENDPOINT_URL = ""
    settings.CLAMD_URL = ""
    settings.DOCUMENT_REQUIRE_SCAN = False
    settings.DOCUMENT_USER_QUOTA_BYTES = 0
    providers.reset()
    yield settings
    providers.reset()


@pytest.fixture(autouse=True)
def eager_tasks():
    """Tasks enqueued on commit run inline (retries too, without sleeping)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def s3(settings):
    """S3 through moto: the real boto3 and django-storages code, HTTP answered in-process."""
    with mock_aws():
        settings.S3_BUCKET = BUCKET
        settings.AWS_ACCESS_KEY_ID = "AKIATESTTESTTESTTEST"
        settings.AWS_SECRET_ACCESS_KEY = "test-secret-key"
        settings.AWS_S3_REGION_NAME = "us-east-1"
        providers.reset()
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
        providers.reset()


class FakeClamd:
    """Speaks clamd's INSTREAM protocol; finds the EICAR test string like the real one does."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.streams = []
        self.max_chunk_seen = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _recv_exact(self, conn, n):
        data = b""
        while len(data) < n:
            piece = conn.recv(n - len(data))
            if not piece:
                raise ConnectionError("client went away")
            data += piece
        return data

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    command = b""
                    while not command.endswith(b"\0"):
                        command += self._recv_exact(conn, 1)
                    if command == b"zPING\0":
                        conn.sendall(b"PONG\0")
                        continue
                    assert command == b"zINSTREAM\0", command
                    data = b""
                    while True:
                        (size,) = struct.unpack("!L", self._recv_exact(conn, 4))
                        if size == 0:
                            break
                        self.max_chunk_seen = max(self.max_chunk_seen, size)
                        data += self._recv_exact(conn, size)
                    self.streams.append(data)
                    if EICAR in data:
                        conn.sendall(b"stream: Eicar-Test-Signature FOUND\0")
                    else:
                        conn.sendall(b"stream: OK\0")
                except (ConnectionError, AssertionError):
                    continue

    def close(self):
        self.sock.close()


@pytest.fixture
def clamd_server(settings):
    server = FakeClamd()
    settings.CLAMD_URL = server.url
    yield server
    server.close()
