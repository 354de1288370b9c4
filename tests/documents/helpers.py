from .conftest import upload_file

URL = "/api/v1/documents/"


def post(client, name, content, content_type="application/octet-stream"):
    return client.post(URL, {"file": upload_file(name, content, content_type)}, format="multipart")


def post_version(client, doc_id, name, content, content_type="application/octet-stream"):
    return client.post(
        f"{URL}{doc_id}/versions/", {"file": upload_file(name, content, content_type)}, format="multipart"
    )
