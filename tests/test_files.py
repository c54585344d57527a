"""The file endpoints: upload, info and download, their errors, limits and safety."""

from __future__ import annotations

import io
import os
import sqlite3
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from flask import Flask
from werkzeug.test import EnvironBuilder, TestResponse
from werkzeug.wrappers import Request

from flask_verdant import FileInfo, LocalFileStorage, ReplicaType, TokenProvider, Verdant
from flask_verdant.files import ReadableStream
from flask_verdant.storage import Transaction
from flask_verdant.testing import VerdantTestClient

from .helpers import SECRET, dump_database

BOUNDARY = "----verdant-test-boundary"


def multipart(
    filename: str,
    content: bytes,
    content_type: str = "application/octet-stream",
    field: str = "file",
) -> bytes:
    """A one-part body built by hand, so names no client library would send can be tested."""
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{quoted}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{BOUNDARY}--\r\n".encode()


class FilesClient:
    """Talks to the file endpoints of an app as one user of one library."""

    def __init__(
        self, app: Flask, library_id: str = "lib", type: ReplicaType = ReplicaType.REALTIME
    ) -> None:
        self.app = app
        self.http = app.test_client()
        self.token = TokenProvider(SECRET).get_token(
            library_id=library_id,
            user_id="user",
            sync_endpoint="http://localhost/sync",
            type=type,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def upload(
        self,
        file_id: str,
        content: bytes,
        name: str = "photo.png",
        content_type: str = "image/png",
    ) -> TestResponse:
        return self.http.post(
            f"/sync/files/{file_id}",
            headers=self.headers,
            data={"file": (io.BytesIO(content), name, content_type)},
        )

    def upload_raw(self, file_id: str, body: bytes, **kwargs: Any) -> TestResponse:
        return self.http.post(
            f"/sync/files/{file_id}",
            headers=self.headers,
            data=body,
            content_type=f"multipart/form-data; boundary={BOUNDARY}",
            **kwargs,
        )

    def upload_stream(
        self, file_id: str, body: ReadableStream, content_length: int | None = None
    ) -> TestResponse:
        """POST a body read lazily from ``body``; without a length it is sent as if chunked."""
        environ = EnvironBuilder(
            path=f"/sync/files/{file_id}",
            method="POST",
            headers=list(self.headers.items()),
        ).get_environ()
        environ["CONTENT_TYPE"] = f"multipart/form-data; boundary={BOUNDARY}"
        environ["wsgi.input"] = body
        if content_length is None:
            environ.pop("CONTENT_LENGTH", None)
            environ["wsgi.input_terminated"] = True
        else:
            environ["CONTENT_LENGTH"] = str(content_length)
        return self.http.open(Request(environ))

    def info(self, file_id: str) -> TestResponse:
        return self.http.get(f"/sync/files/{file_id}", headers=self.headers)

    def download(self, url: str, **kwargs: Any) -> TestResponse:
        """GET a download URL without any token, as a browser's ``<img src>`` would."""
        parts = urlsplit(url)
        return self.http.get(parts.path, **kwargs)


def stored_files(root: Path) -> list[str]:
    """Every regular file under the storage root, temporary ones included."""
    return sorted(
        str(Path(directory, name).relative_to(root))
        for directory, _, names in os.walk(root)
        for name in names
    )


def file_rows(database_file: str) -> list[tuple[Any, ...]]:
    """The ``files`` table (absent when nothing ever opened the database)."""
    return dump_database(database_file).get("files", [])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "files"


@pytest.fixture
def files_app(make_app: Callable[..., Flask], root: Path) -> Flask:
    return make_app({"VERDANT_FILE_SWEEP_INTERVAL": 0}, file_storage=LocalFileStorage(root))


@pytest.fixture
def client(files_app: Flask) -> FilesClient:
    return FilesClient(files_app)


# -- the happy path ------------------------------------------------------------------------
def test_upload_then_info_then_download_gives_the_same_bytes(client: FilesClient) -> None:
    content = os.urandom(200_000)
    response = client.upload("f1", content, "photo.png", "image/png")
    assert response.status_code == 200
    assert response.get_json() == {"success": True}

    info = client.info("f1")
    assert info.status_code == 200
    body = info.get_json()
    assert {k: body[k] for k in ("id", "remote", "name", "type")} == {
        "id": "f1",
        "remote": True,
        "name": "photo.png",
        "type": "image/png",
    }
    assert body["url"].startswith("http://localhost/sync/files/f1/")

    download = client.download(body["url"])
    assert download.status_code == 200
    assert download.get_data() == content
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["Content-Length"] == str(len(content))
    assert "immutable" in download.headers["Cache-Control"]
    assert "max-age=31536000" in download.headers["Cache-Control"]
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Security-Policy"] == "sandbox"
    assert download.headers["ETag"]


def test_download_supports_ranges_and_revalidation(client: FilesClient) -> None:
    client.upload("f1", b"0123456789", "digits.txt", "text/plain")
    url = client.info("f1").get_json()["url"]
    partial = client.download(url, headers={"Range": "bytes=2-5"})
    assert partial.status_code == 206
    assert partial.get_data() == b"2345"
    assert client.download(url, headers={"Range": "bytes=50-60"}).status_code == 416
    etag = client.download(url).headers["ETag"]
    assert client.download(url, headers={"If-None-Match": etag}).status_code == 304


def test_names_are_percent_encoded_in_urls(client: FilesClient, root: Path) -> None:
    name = "my photo #1 (ü) 100%?.jpg"
    assert client.upload("f1", b"bytes", name, "image/jpeg").status_code == 200
    url = client.info("f1").get_json()["url"]
    last_segment = url.rsplit("/", 1)[1]
    assert unquote(last_segment) == name
    assert not set(last_segment) & set(" #?\u00fc")
    assert "%25" in last_segment  # the literal % is encoded too
    assert client.download(url).get_data() == b"bytes"
    assert any(path.endswith(name) for path in stored_files(root))


def test_text_types_are_served_verbatim(client: FilesClient) -> None:
    client.upload("f1", b"hi", "note.txt", "text/plain")
    url = client.info("f1").get_json()["url"]
    assert client.download(url).headers["Content-Type"] == "text/plain"


def test_malformed_media_type_falls_back_to_octet_stream(client: FilesClient) -> None:
    body = multipart("a.bin", b"x", content_type="text/html\x0bevil")
    assert client.upload_raw("f1", body).status_code == 200
    assert client.info("f1").get_json()["type"] == "application/octet-stream"


def test_any_field_name_is_accepted_and_other_fields_skipped(client: FilesClient) -> None:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'.encode()
        + multipart("a.txt", b"payload", "text/plain", field="attachment")
    )
    assert client.upload_raw("f1", body).status_code == 200
    url = client.info("f1").get_json()["url"]
    assert client.download(url).get_data() == b"payload"


def test_reupload_replaces_the_file_and_deletes_the_old_bytes(
    client: FilesClient, root: Path
) -> None:
    client.upload("f1", b"first", "one.txt", "text/plain")
    old_url = client.info("f1").get_json()["url"]
    client.upload("f1", b"second", "two.txt", "text/plain")
    info = client.info("f1").get_json()
    assert info["name"] == "two.txt"
    assert client.download(info["url"]).get_data() == b"second"
    assert client.download(old_url).status_code == 404
    assert [p for p in stored_files(root)] == [f"lib/f1/{info['url'].split('/')[-2]}/two.txt"]


def test_storage_url_points_to_the_host_when_one_is_configured(
    make_app: Callable[..., Flask], root: Path
) -> None:
    app = make_app(file_storage=LocalFileStorage(root, host="https://cdn.example.com/v/"))
    client = FilesClient(app, library_id="team/1 ü")
    client.upload("f1", b"bytes", "a b.txt", "text/plain")
    url = client.info("f1").get_json()["url"]
    assert url.startswith("https://cdn.example.com/v/")
    # a static server maps the URL path (decoded once) onto the storage root
    relative = unquote(url.removeprefix("https://cdn.example.com/v/"))
    assert (root / relative).read_bytes() == b"bytes"
    assert relative.startswith("team%2F1%20%C3%BC/f1/")


def test_storage_can_come_from_config(make_app: Callable[..., Flask], root: Path) -> None:
    app = make_app({"VERDANT_FILE_STORAGE": LocalFileStorage(root)})
    assert FilesClient(app).upload("f1", b"x").status_code == 200


# -- refusals ------------------------------------------------------------------------------
def test_without_storage_both_endpoints_answer_501(app: Flask) -> None:
    client = FilesClient(app)
    for response in (client.upload("f1", b"x"), client.info("f1")):
        assert response.status_code == 501
        assert response.get_json()["code"] == 5011


def test_a_token_is_required(client: FilesClient) -> None:
    assert client.http.get("/sync/files/f1").status_code == 401
    response = client.http.post("/sync/files/f1", data={"file": (io.BytesIO(b"x"), "a.txt")})
    assert response.status_code == 401


def test_read_only_replicas_cannot_upload_but_can_read(
    files_app: Flask, client: FilesClient, root: Path
) -> None:
    client.upload("f1", b"x")
    reader = FilesClient(files_app, type=ReplicaType.READ_ONLY_PULL)
    response = reader.upload("f2", b"y")
    assert response.status_code == 403
    assert response.get_json()["code"] == 4030
    assert reader.info("f2").status_code == 404
    assert reader.info("f1").status_code == 200
    assert len(stored_files(root)) == 1


def test_unknown_file_is_404(client: FilesClient) -> None:
    response = client.info("nope")
    assert response.status_code == 404
    assert response.get_json()["code"] == 4040


def test_unknown_or_mismatched_download_url_is_404(client: FilesClient) -> None:
    client.upload("f1", b"x", "a.txt")
    url = client.info("f1").get_json()["url"]
    base, upload_id, name = url.rsplit("/", 2)
    assert client.download(f"{base}/{upload_id}/other.txt").status_code == 404
    assert client.download(f"{base}/{'0' * 32}/{name}").status_code == 404
    assert client.download(url.replace("/f1/", "/f2/")).status_code == 404


@pytest.mark.parametrize(
    "file_id",
    ["..", ".", "a%2Fb", "a%5Cb", "a%00b", "%2E%2E%2Fx", "x" * 256, "a%0Ab"],
)
def test_unsafe_file_ids_are_refused(
    client: FilesClient, root: Path, database_file: str, file_id: str
) -> None:
    assert client.upload(file_id, b"x").status_code == 400
    assert client.info(file_id).status_code == 400
    assert stored_files(root) == []
    assert file_rows(database_file) == []


@pytest.mark.parametrize(
    "name",
    [
        "..",
        ".",
        "",
        "../escape.txt",
        "/etc/passwd",
        "a/b.txt",
        "a\\b.txt",
        "C:\\x\\y.txt",
        "x\x00y.txt",
        "tab\there.txt",
        "é" * 200,
    ],
)
def test_unsafe_file_names_are_refused(
    client: FilesClient, root: Path, database_file: str, name: str
) -> None:
    response = client.upload_raw("f1", multipart(name, b"content"))
    assert response.status_code == 400
    assert response.get_json()["code"] == 4000
    assert stored_files(root) == []
    assert file_rows(database_file) == []


def test_a_body_that_is_not_multipart_is_refused(client: FilesClient, root: Path) -> None:
    response = client.http.post(
        "/sync/files/f1", headers=client.headers, data=b"raw", content_type="image/png"
    )
    assert response.status_code == 400
    assert client.upload_raw("f1", b"no boundary here").status_code == 400
    plain_field = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n'
    assert (
        client.upload_raw("f1", (plain_field + f"--{BOUNDARY}--\r\n").encode()).status_code == 400
    )
    assert stored_files(root) == []


# -- isolation -----------------------------------------------------------------------------
def test_libraries_are_isolated(files_app: Flask, root: Path) -> None:
    alice = FilesClient(files_app, library_id="alpha")
    mallory = FilesClient(files_app, library_id="beta")
    alice.upload("shared-id", b"alpha's bytes", "a.txt")
    assert mallory.info("shared-id").status_code == 404
    # the same id in another library is another file; it does not overwrite alpha's
    mallory.upload("shared-id", b"beta's bytes", "a.txt")
    alpha_url = alice.info("shared-id").get_json()["url"]
    beta_url = mallory.info("shared-id").get_json()["url"]
    assert alice.download(alpha_url).get_data() == b"alpha's bytes"
    assert mallory.download(beta_url).get_data() == b"beta's bytes"


@pytest.mark.parametrize("library_id", ["..", "../other", "a/b", ".uploads", "%2E%2E"])
def test_library_ids_cannot_escape_the_root(
    files_app: Flask, root: Path, tmp_path: Path, library_id: str
) -> None:
    client = FilesClient(files_app, library_id=library_id)
    assert client.upload("f1", b"x", "a.txt").status_code == 200
    (path,) = stored_files(root)
    assert (root / path).resolve().is_relative_to(root.resolve())
    assert not path.startswith(".")
    assert len(Path(path).parts) == 4


# -- limits --------------------------------------------------------------------------------
class Zeros:
    """A huge body produced on demand: ``head``, ``total`` zero bytes, ``tail``."""

    def __init__(self, head: bytes, total: int, tail: bytes = b"") -> None:
        self.head = head
        self.remaining = total
        self.tail = tail
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        if self.head:
            chunk, self.head = self.head, b""
            return chunk
        size = min(self.remaining, 64 * 1024 if size < 0 else size)
        if not size:
            chunk, self.tail = self.tail, b""
            return chunk
        self.remaining -= size
        self.consumed += size
        return b"\0" * size


HEAD = multipart("big.bin", b"")[: -len(f"\r\n--{BOUNDARY}--\r\n")]
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def small_limit_client(make_app: Callable[..., Flask], root: Path) -> FilesClient:
    app = make_app(
        {"VERDANT_MAX_FILE_BYTES": 1000, "VERDANT_FILE_SWEEP_INTERVAL": 0},
        file_storage=LocalFileStorage(root),
    )
    return FilesClient(app)


def test_the_limit_itself_is_accepted(small_limit_client: FilesClient) -> None:
    assert small_limit_client.upload("f1", b"x" * 1000).status_code == 200


def test_an_upload_over_the_limit_is_413_and_leaves_nothing(
    small_limit_client: FilesClient, root: Path, database_file: str
) -> None:
    response = small_limit_client.upload("f1", b"x" * 1001)
    assert response.status_code == 413
    assert response.get_json()["code"] == 4130
    assert stored_files(root) == []
    assert file_rows(database_file) == []


def test_a_declared_length_over_the_limit_is_refused_before_reading(
    small_limit_client: FilesClient,
) -> None:
    body = Zeros(HEAD, 10**9, TAIL)
    response = small_limit_client.upload_stream("f1", body, content_length=10**9)
    assert response.status_code == 413
    assert body.consumed == 0


def test_an_endless_stream_is_cut_at_the_limit_without_buffering(
    make_app: Callable[..., Flask], root: Path, database_file: str
) -> None:
    """No Content-Length (chunked): the limit stops a 256 MiB body after ~1 MiB, and memory
    stays bounded by the read chunks, not the body."""
    limit = 1024 * 1024
    app = make_app(
        {"VERDANT_MAX_FILE_BYTES": limit, "VERDANT_FILE_SWEEP_INTERVAL": 0},
        file_storage=LocalFileStorage(root),
    )
    client = FilesClient(app)
    body = Zeros(HEAD, 256 * 1024 * 1024)
    tracemalloc.start()
    try:
        response = client.upload_stream("big", body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert body.consumed < 2 * limit
    assert peak < 8 * 1024 * 1024
    assert stored_files(root) == []
    assert file_rows(database_file) == []


def test_a_large_upload_streams_to_disk(make_app: Callable[..., Flask], root: Path) -> None:
    """A 32 MiB file below the limit is stored without holding it in memory."""
    size = 32 * 1024 * 1024
    app = make_app({"VERDANT_FILE_SWEEP_INTERVAL": 0}, file_storage=LocalFileStorage(root))
    client = FilesClient(app)
    body = Zeros(HEAD, size, TAIL)
    tracemalloc.start()
    try:
        response = client.upload_stream("big", body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200, response.get_data()
    assert client.info("big").get_json()["name"] == "big.bin"
    (path,) = stored_files(root)
    assert (root / path).stat().st_size == size
    assert peak < 8 * 1024 * 1024


# -- crashes in the middle of an upload ----------------------------------------------------
class ExplodingStorage(LocalFileStorage):
    """Stores like LocalFileStorage but the disk "fails" after some bytes were written."""

    def put(self, stream: ReadableStream, info: FileInfo) -> int:
        class Failing:
            def __init__(self) -> None:
                self.count = 0

            def read(self, size: int = -1) -> bytes:
                self.count += 1
                if self.count > 2:
                    raise OSError(28, "No space left on device")
                return stream.read(size)

        return super().put(Failing(), info)


def test_a_storage_failure_mid_upload_leaves_no_metadata_and_no_partial_file(
    make_app: Callable[..., Flask], root: Path, database_file: str
) -> None:
    app = make_app({"VERDANT_FILE_SWEEP_INTERVAL": 0}, file_storage=ExplodingStorage(root))
    client = FilesClient(app)
    response = client.upload("f1", os.urandom(5 * 1024 * 1024))
    assert response.status_code == 503  # a full disk: the client may try again later
    assert response.get_json()["code"] == 5030
    assert client.info("f1").status_code == 404
    assert stored_files(root) == []
    assert file_rows(database_file) == []


def test_a_body_cut_short_leaves_no_metadata_and_no_partial_file(
    client: FilesClient, root: Path, database_file: str
) -> None:
    body = multipart("a.bin", os.urandom(300_000))[:200_000]
    response = client.upload_raw("f1", body)
    assert response.status_code == 400
    assert stored_files(root) == []
    assert file_rows(database_file) == []


def test_a_database_failure_after_storing_removes_the_bytes(
    client: FilesClient, root: Path, database_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: Transaction, info: FileInfo) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Transaction, "put_file", fail)
    assert client.upload("f1", b"x" * 1000).status_code == 500
    assert stored_files(root) == []
    assert file_rows(database_file) == []


def test_metadata_is_written_only_after_the_bytes_are_durable(
    make_app: Callable[..., Flask],
    root: Path,
    database_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(source: Any, target: Any) -> None:
        events.append("rename")
        real_replace(source, target)

    class Observed(LocalFileStorage):
        def put(self, stream: ReadableStream, info: FileInfo) -> int:
            size = super().put(stream, info)
            events.append(f"rows during put: {len(file_rows(database_file))}")
            return size

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    app = make_app({"VERDANT_FILE_SWEEP_INTERVAL": 0}, file_storage=Observed(root))
    FilesClient(app).upload("f1", b"data")
    assert events[:2] == ["fsync", "rename"]  # file data first, then the atomic rename
    during_put = events.index("rows during put: 0")
    assert "fsync" in events[2:during_put]  # the directory entries after the rename
    # After the metadata's commit only the WAL's own sync (the upload is answered after it).
    assert set(events[during_put + 1 :]) <= {"fsync"}
    assert len(file_rows(database_file)) == 1


def test_document_snapshots_describe_files(files_app: Flask, client: FilesClient) -> None:
    client.upload("f1", b"x", "a b.txt", "text/plain")
    alice = VerdantTestClient(files_app, library_id="lib", user_id="alice")
    value = {
        "id": "a",
        "file": {"@@type": "file", "id": "f1"},
        "gone": {"@@type": "file", "id": "x"},
    }
    alice.sync(operations=[alice.operation("attachments/a", {"op": "initialize", "value": value})])
    url = client.info("f1").get_json()["url"]
    with files_app.test_request_context():
        snapshot = Verdant().get_document_snapshot("lib", "attachments", "a")
    assert snapshot == {
        "id": "a",
        "file": {"id": "f1", "url": url, "name": "a b.txt", "type": "text/plain"},
        "gone": None,
    }
    with files_app.app_context():  # no request, no SERVER_NAME: no URL can be built
        snapshot = Verdant().get_document_snapshot("lib", "attachments", "a")
    assert snapshot is not None and snapshot["file"]["url"] is None


@pytest.mark.parametrize(
    "declared",
    [
        "text/plain;charset=utf-8",
        "text/plain; charset=UTF-8",
        'text/markdown; charset="utf-8"; variant=GFM',
        "application/vnd.api+json;profile=x",
    ],
)
def test_media_type_parameters_round_trip(client: FilesClient, declared: str) -> None:
    client.upload("f1", b"hi", "note.txt", declared)
    info = client.info("f1").get_json()
    assert info["type"] == declared
    assert client.download(info["url"]).headers["Content-Type"] == declared
