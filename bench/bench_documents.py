"""Documents: a 45 MB upload through the API to S3 (moto server), against boto3's own upload_fileobj.

Everything runs on 127.0.0.1 in child processes, so each one's memory is its own:
  - moto's S3 server;
  - the hub under gunicorn (one sync worker), settings from the environment,
    a throwaway SQLite database; the client streams the multipart body in
    64 KiB pieces, so nothing on the client side holds the file either;
  - a plain Python process running boto3's upload_fileobj with the same
    TransferConfig (part size and concurrency) as the hub.
Peak memory is the process's VmHWM, reset (clear_refs 5) just before each upload.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench import common

TITLE = "Documents: 45 MB upload through the hub vs boto3 upload_fileobj (moto server)"

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SIZE = 45 * 1024 * 1024
PART = 8 * 1024 * 1024
CONCURRENCY = 2
RUNS = 3
BUCKET = "bench-documents"
FERNET = "q8yF3v2bJm0nN4r6rU1oYbq2j8c8V2mZr1aXlN0l0Ws="


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kb(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak(pid):
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


def _env(tmp, s3_port):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "DOCUMENT_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY="bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        FIELD_ENCRYPTION_KEYS=FERNET,
        DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3",
        CELERY_BROKER_URL="memory://",
        SECURE_SSL_REDIRECT="false",
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        S3_BUCKET=BUCKET,
        AWS_ACCESS_KEY_ID="AKIABENCHBENCHBENCH0",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_S3_REGION_NAME="us-east-1",
        AWS_S3_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}",
        AWS_S3_ADDRESSING_STYLE="path",
        S3_MULTIPART_THRESHOLD_BYTES=str(PART),
        S3_MULTIPART_CHUNK_BYTES=str(PART),
        S3_MAX_CONCURRENCY=str(CONCURRENCY),
        DOCUMENT_MAX_BYTES=str(50 * 1024 * 1024),
        DOCUMENT_UPLOAD_RATE="1000/m",
        PYTHONPATH=str(ROOT),
    )
    env.pop("REDIS_URL", None)  # the web process needs no Redis for this; limits use local state
    return env


def _stream_upload(port, token, path, filename, content_type):
    """POST multipart/form-data, the file sent in 64 KiB pieces (no whole body in memory)."""
    boundary = "----hubbench7MA4YWxkTrZu0gW"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + os.path.getsize(path) + len(tail)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.putrequest("POST", "/api/v1/documents/")
    conn.putheader("Authorization", f"Token {token}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.send(head)
    with open(path, "rb") as fh:
        while chunk := fh.read(64 * 1024):
            conn.send(chunk)
    conn.send(tail)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status != 201:
        raise RuntimeError(f"upload answered {resp.status}: {body[:300]!r}")
    return json.loads(body)


BOTO_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    port, path, key, part, conc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="AKIABENCHBENCHBENCH0", aws_secret_access_key="bench-secret",
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=conc,
        preferred_transfer_client="classic")
    client.list_buckets()  # warm the client like the hub's warm-up upload
    def kb(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    base = kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    with open(path, "rb") as fh:
        client.upload_fileobj(fh, "%s", key, ExtraArgs={"ServerSideEncryption": "AES256", "ACL": "private"}, Config=config)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "base_kb": base, "peak_kb": kb("VmHWM")}))
    """
    % BUCKET
)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run():
    tmp = tempfile.mkdtemp(prefix="bench-documents-")
    procs = []
    try:
        s3_port, hub_port = _free_port(), _free_port()
        moto = subprocess.Popen(
            [str(Path(PY).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(moto)
        env = _env(tmp, s3_port)
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        token = (
            subprocess.run(
                [
                    PY,
                    "manage.py",
                    "shell",
                    "-c",
                    "from django.contrib.auth.models import User; from integrations.auth.tokens import token_create;"
                    "u = User.objects.create_user('bench', password='x'); print(token_create(user=u)[1])",
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        common.wait_port(s3_port)
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        s3.create_bucket(Bucket=BUCKET)

        gunicorn = subprocess.Popen(
            [PY, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{hub_port}", "-w", "1", "--timeout", "300"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "gunicorn.log", "w"),
        )
        procs.append(gunicorn)
        common.wait_port(hub_port)
        worker = _children(gunicorn.pid)[0]

        path = Path(tmp) / "big.pdf"
        with open(path, "wb") as fh:
            fh.write(b"%PDF-1.7\n")
            remaining = SIZE - 9
            while remaining:
                n = min(remaining, 1024 * 1024)
                fh.write(os.urandom(n))
                remaining -= n
        small = Path(tmp) / "small.pdf"
        small.write_bytes(b"%PDF-1.7\n" + os.urandom(1024))
        _stream_upload(hub_port, token, small, "warmup.pdf", "application/pdf")  # imports, clients, DB

        hub, boto = [], []
        for i in range(RUNS):
            base = _status_kb(worker, "VmRSS")
            _reset_peak(worker)
            start = time.perf_counter()
            doc = _stream_upload(hub_port, token, path, f"big-{i}.pdf", "application/pdf")
            seconds = time.perf_counter() - start
            assert doc["size"] == SIZE, doc
            hub.append({"seconds": seconds, "base_kb": base, "peak_kb": _status_kb(worker, "VmHWM")})

            out = subprocess.run(
                [PY, "-c", BOTO_SCRIPT, str(s3_port), str(path), f"boto-{i}", str(PART), str(CONCURRENCY)],
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            )
            boto.append(json.loads(out.stdout.strip().splitlines()[-1]))
            for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
                s3.delete_object(Bucket=BUCKET, Key=obj["Key"])  # keep moto's memory flat

        def med(rows, key):
            return statistics.median(r[key] for r in rows)

        mb = SIZE / 1e6
        hub_mbs, boto_mbs = mb / med(hub, "seconds"), mb / med(boto, "seconds")
        hub_peak, hub_base = med(hub, "peak_kb") / 1024, med(hub, "base_kb") / 1024
        boto_peak, boto_base = med(boto, "peak_kb") / 1024, med(boto, "base_kb") / 1024
        part_mb = PART / 1024 / 1024
        lines = [
            f"45 MiB file ({SIZE} bytes, incompressible), {RUNS} runs each, medians; part size {part_mb:.0f} MiB, "
            f"concurrency {CONCURRENCY}, moto server on 127.0.0.1.",
            "",
            "| path | MB/s | peak RSS MiB | RSS before MiB | growth MiB |",
            "|---|---:|---:|---:|---:|",
            f"| hub API (gunicorn worker: parse + spool + type check + S3 multipart) | {hub_mbs:.1f} | {hub_peak:.1f} | {hub_base:.1f} | {hub_peak - hub_base:.1f} |",
            f"| boto3 upload_fileobj, same file, part size and concurrency | {boto_mbs:.1f} | {boto_peak:.1f} | {boto_base:.1f} | {boto_peak - boto_base:.1f} |",
            "",
            f"- hub throughput is {hub_mbs / boto_mbs:.2f}x boto3's alone (the hub also receives the body over HTTP, "
            "spools it to a temporary file and hashes it before sending it on).",
            f"- target (read as growth over the worker's RSS before the upload): under 2 x part size + 50 MiB = "
            f"{2 * part_mb + 50:.0f} MiB; measured median growth {hub_peak - hub_base:.1f} MiB, peak {hub_peak:.1f} MiB "
            "absolute. The hub caps s3transfer's in-memory parts at the concurrency; the boto3 row keeps boto3's "
            "default of up to 10 parts in memory, hence its larger growth.",
            "- per run hub RSS before/peak MiB: "
            + ", ".join(f"{r['base_kb'] / 1024:.0f}/{r['peak_kb'] / 1024:.0f}" for r in hub)
            + "; boto3: "
            + ", ".join(f"{r['base_kb'] / 1024:.0f}/{r['peak_kb'] / 1024:.0f}" for r in boto)
            + ".",
            "- per run hub seconds: "
            + ", ".join(f"{r['seconds']:.2f}" for r in hub)
            + "; boto3 seconds: "
            + ", ".join(f"{r['seconds']:.2f}" for r in boto)
            + ".",
        ]
        return "\n".join(lines)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
