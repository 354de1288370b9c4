"""Google Drive as Meet leaves files in it, answered at httpx's transport (respx): `files.get?alt=media` streams
a recording's MP4, `files.export?mimeType=text/plain` a transcript Doc as text. Tests add files, script failures
and read the requests it saw."""

import httpx
import pytest
import respx

from .fakes import FakeGoogle

DRIVE = "https://www.googleapis.com/drive/v3"  # the default root: what the hub calls with no override
DRIVE_MEET_READONLY = "https://www.googleapis.com/auth/drive.meet.readonly"
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"MEETVIDEO" * 4000


class FakeDrive:
    token = FakeGoogle.token  # the same Google account's token as Calendar and Meet

    def __init__(self):
        self.files = {"1AbC": MP4}  # the file id FakeMeetEvents.recording / FakeGoogle.record name
        self.docs = {"1DoC": "Ana Lima: Welcome, everyone.\nGrace Hopper: Thanks.\n"}
        self.fail = []  # httpx.Response answers for the next requests
        self.requests = []

    def routes(self, router):
        router.get(url__startswith=DRIVE + "/files/").mock(side_effect=self._files)

    def _files(self, request):
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": {"code": 401, "message": "Invalid Credentials"}})
        if self.fail:
            return self.fail.pop(0)
        path = request.url.path.removeprefix("/drive/v3/files/")
        if path.endswith("/export"):
            doc = self.docs.get(path.removesuffix("/export"))
            if doc is None or request.url.params.get("mimeType") != "text/plain":
                return httpx.Response(404, json=NOT_FOUND)
            return httpx.Response(200, content=doc.encode(), headers={"content-type": "text/plain"})
        content = self.files.get(path)
        if content is None or request.url.params.get("alt") != "media":
            return httpx.Response(404, json=NOT_FOUND)
        return httpx.Response(
            200, content=content, headers={"content-type": "video/mp4", "content-length": str(len(content))}
        )


NOT_FOUND = {
    "error": {
        "code": 404,
        "message": "File not found: 1AbC.",
        "errors": [{"message": "File not found: 1AbC.", "domain": "global", "reason": "notFound"}],
    }
}


def insufficient_scope():
    """What Drive answers a token without a Drive scope (its body and its WWW-Authenticate header)."""
    return httpx.Response(
        403,
        json={
            "error": {
                "code": 403,
                "message": "Request had insufficient authentication scopes.",
                "errors": [
                    {"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}
                ],
                "status": "PERMISSION_DENIED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}
                ],
            }
        },
        headers={"www-authenticate": 'Bearer realm="https://accounts.google.com/", error="insufficient_scope"'},
    )


@pytest.fixture
def drive():
    fake = FakeDrive()
    with respx.mock(assert_all_called=False) as router:
        fake.routes(router)
        yield fake
