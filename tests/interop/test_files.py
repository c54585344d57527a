"""File sync with the real ``@verdant-web/store`` clients against a live server process.

The server runs with a ``LocalFileStorage`` in the test's directory (``VERDANT_FILE_ROOT``)
and a short lifecycle: a sweep every 0.2 s and a 1 s grace period. Client scenarios run once
per store version; the raw-HTTP checks (unsafe names, limits, a client vanishing mid-upload)
run once. The official server has no file storage in our reference host, so this module runs
against flask-verdant only.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import NODE_BAD_PORTS, TARGET, LiveServer
from .driver import Client, NodeDriver, wait_until

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(TARGET != "flask", reason="the reference host has no file storage"),
]

MAX_FILE_BYTES = 4 * 1024 * 1024
TIMEOUT = 30.0
BOUNDARY = "----interop-boundary"


class FileServer:
    """The live server plus where its files are stored."""

    def __init__(self, server: LiveServer, root: Path) -> None:
        self.server = server
        self.root = root

    def token(self, library: str, user: str = "tester") -> str:
        response = requests.get(self.server.auth_url(library, user), timeout=10)
        response.raise_for_status()
        return str(response.json()["accessToken"])

    def info(self, library: str, file_id: str) -> requests.Response:
        return requests.get(
            f"{self.server.sync_url}/files/{file_id}",
            headers={"Authorization": f"Bearer {self.token(library)}"},
            timeout=10,
        )

    def stored(self) -> list[str]:
        """Every regular file under the storage root, temporary uploads included."""
        return sorted(
            str(Path(directory, name).relative_to(self.root))
            for directory, _, names in os.walk(self.root)
            for name in names
        )


@pytest.fixture
def files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[FileServer]:
    root = tmp_path / "files"
    monkeypatch.setenv("VERDANT_FILE_ROOT", str(root))
    monkeypatch.setenv("VERDANT_FILE_SWEEP_INTERVAL", "0.2")
    monkeypatch.setenv("VERDANT_FILE_DELETE_AFTER", "1")
    # A dropped file is found by compaction, which waits for the global ack.
    monkeypatch.setenv("VERDANT_GLOBAL_ACK_DELAY_SECONDS", "0.3")
    monkeypatch.setenv("VERDANT_MAX_FILE_BYTES", str(MAX_FILE_BYTES))
    server = LiveServer(tmp_path)
    server.start()
    try:
        yield FileServer(server, root)
    finally:
        server.stop()
        if any(
            getattr(request.node, f"rep_{when}", None)
            and getattr(request.node, f"rep_{when}").failed
            for when in ("setup", "call")
        ):
            print(server.log_tail())


# -- client helpers ----------------------------------------------------------------------------
def file_spec(content: bytes, name: str, type: str) -> dict[str, str]:
    return {"name": name, "type": type, "base64": base64.b64encode(content).decode()}


def open_online(
    driver: NodeDriver, files: FileServer, name: str, library: str, transport: str
) -> Client:
    client = driver.open_client(
        name,
        auth_url=files.server.auth_url(library, name),
        user=name,
        library=library,
        transport=transport,
        pull_interval=300,
    )
    client.wait_online(sync_responses=2 if transport == "pull" else 1)
    return client


def attach(client: Client, doc_id: str, content: bytes, name: str, type: str) -> None:
    client.driver.call(
        "put_attachment", name=client.name, id=doc_id, file=file_spec(content, name, type)
    )


def remote_file(client: Client, doc_id: str) -> dict[str, Any]:
    """Wait until ``client`` has the attachment with a server URL, and download it."""

    def loaded() -> dict[str, Any] | None:
        result = client.driver.call("attachment_file", name=client.name, id=doc_id, download=True)
        if result and result.get("base64") is not None and result.get("status") == 200:
            return dict(result)
        return None

    result: dict[str, Any] = wait_until(
        loaded, TIMEOUT, interval=0.2, message=f"{client.name} never got file {doc_id}"
    )
    return result


def file_id_of(client: Client, doc_id: str) -> str:
    result = client.driver.call("attachment_file", name=client.name, id=doc_id)
    return str(result["id"])


# -- scenarios with the real client ------------------------------------------------------------
@pytest.mark.parametrize("transport", ["pull", "realtime"])
def test_a_file_attached_on_one_replica_downloads_identically_on_another(
    files: FileServer, node_driver: NodeDriver, transport: str
) -> None:
    library = f"attach-{transport}"
    alice = open_online(node_driver, files, "alice", library, transport)
    bob = open_online(node_driver, files, "bob", library, transport)
    content = os.urandom(300_000)
    attach(alice, "doc-1", content, "holiday photo #1.png", "image/png")

    got = remote_file(bob, "doc-1")
    assert base64.b64decode(got["base64"]) == content
    assert got["name"] == "holiday photo #1.png"
    assert got["type"] == "image/png"
    assert got["contentType"] == "image/png"
    assert got["url"].startswith(files.server.sync_url + "/files/")
    # the uploader's replica keeps using its local copy
    local = node_driver.call("attachment_file", name="alice", id="doc-1")
    assert local["id"] == got["id"] and not local["failed"]


class Partition:
    """A TCP forwarder in front of the live server that can be cut: a network outage.

    Stopping a 3.x pull client does not make it consider itself offline (only a failed
    request does), so a real outage is the way to exercise "attach offline, upload on
    reconnect" in pull mode.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        while True:
            self.listener = socket.create_server(("127.0.0.1", 0))
            self.port = int(self.listener.getsockname()[1])
            if self.port not in NODE_BAD_PORTS:
                break
            self.listener.close()
        self.online = True
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.online:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.online = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self.online = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def partition(files: FileServer) -> Iterator[Partition]:
    proxy = Partition(files.server.port)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_files_media_type_keeps_its_parameters(
    files: FileServer, node_driver: NodeDriver
) -> None:
    alice = open_online(node_driver, files, "alice", "mime", "pull")
    bob = open_online(node_driver, files, "bob", "mime", "pull")
    attach(alice, "doc-1", "héllo".encode(), "note.txt", "text/plain;charset=utf-8")
    got = remote_file(bob, "doc-1")
    assert base64.b64decode(got["base64"]).decode() == "héllo"
    assert got["type"] == "text/plain;charset=utf-8"
    assert got["contentType"] == "text/plain;charset=utf-8"
    assert files.info("mime", got["id"]).json()["type"] == "text/plain;charset=utf-8"


@pytest.mark.parametrize("transport", ["pull", "realtime"])
def test_a_file_attached_offline_is_uploaded_on_reconnect(
    files: FileServer, node_driver: NodeDriver, partition: Partition, transport: str
) -> None:
    """Pull: the network goes away for longer than the client's upload retries (5 x 1 s).
    Realtime: the client is stopped, which closes its socket."""
    library = f"offline-{transport}"
    alice = node_driver.open_client(
        "alice",
        auth_url=f"http://127.0.0.1:{partition.port}/auth/{library}?user=alice",
        user="alice",
        library=library,
        transport=transport,
        pull_interval=300,
    )
    alice.wait_online(sync_responses=2 if transport == "pull" else 1)
    bob = open_online(node_driver, files, "bob", library, transport)

    # Store 5.x uploads a file whether its sync runs or not: the network must go away too.
    outage = transport == "pull" or node_driver.store_version.startswith("5.")
    if transport == "realtime":
        alice.stop()
        wait_until(lambda: not alice.is_connected, 15, message="alice did not disconnect")
    if outage:
        partition.cut()
        wait_until(lambda: not alice.is_connected, 15, message="alice never noticed the outage")
    content = os.urandom(100_000)
    attach(alice, "doc-1", content, "notes.pdf", "application/pdf")
    file_id = file_id_of(alice, "doc-1")
    time.sleep(7 if outage else 1)  # past every immediate retry
    assert files.info(library, file_id).status_code == 404

    if outage:
        partition.restore()
    if transport == "realtime":
        alice.start()
    wait_until(
        lambda: files.info(library, file_id).status_code == 200,
        TIMEOUT,
        message="the offline attachment was not uploaded after reconnecting",
    )
    got = remote_file(bob, "doc-1")
    assert base64.b64decode(got["base64"]) == content


def test_removing_the_file_deletes_it_after_the_grace_period(
    files: FileServer, node_driver: NodeDriver
) -> None:
    library = "remove-file"
    alice = open_online(node_driver, files, "alice", library, "pull")
    bob = open_online(node_driver, files, "bob", library, "pull")
    attach(alice, "doc-1", b"short-lived", "tmp.txt", "text/plain")
    file_id = file_id_of(alice, "doc-1")
    remote_file(bob, "doc-1")

    node_driver.call("set_attachment_file", name="alice", id="doc-1", file=None)
    wait_until(
        lambda: files.info(library, file_id).status_code == 404,
        TIMEOUT,
        message=lambda: f"the file was never deleted; stored: {files.stored()}",
    )
    assert files.stored() == []


def test_evicting_the_library_deletes_its_files(files: FileServer, node_driver: NodeDriver) -> None:
    alice = open_online(node_driver, files, "alice", "evicted", "pull")
    other = open_online(node_driver, files, "olga", "kept", "pull")
    attach(alice, "doc-1", b"evict me", "a.txt", "text/plain")
    attach(other, "doc-1", b"keep me", "b.txt", "text/plain")
    evicted_id, kept_id = file_id_of(alice, "doc-1"), file_id_of(other, "doc-1")
    wait_until(
        lambda: files.info("evicted", evicted_id).ok and files.info("kept", kept_id).ok,
        TIMEOUT,
        message="the uploads did not arrive",
    )
    files.server.evict("evicted")
    assert files.info("evicted", evicted_id).status_code == 404
    assert files.info("kept", kept_id).status_code == 200
    assert [path.split("/")[0] for path in files.stored()] == ["kept"]


def test_a_file_with_an_unsafe_name_is_refused_and_stored_nowhere(
    files: FileServer, node_driver: NodeDriver, tmp_path: Path
) -> None:
    alice = open_online(node_driver, files, "alice", "unsafe", "pull")
    attach(alice, "doc-1", b"payload", "../../escape.txt", "text/plain")
    file_id = file_id_of(alice, "doc-1")
    wait_until(
        lambda: f'"POST /sync/files/{file_id} HTTP/1.1" 400' in files.server.log(),
        TIMEOUT,
        message="the client's upload was not answered 400",
    )
    assert files.info("unsafe", file_id).status_code == 404
    assert files.stored() == []
    assert not (tmp_path / "escape.txt").exists()


# -- raw HTTP against the live server ----------------------------------------------------------
def multipart(filename: str, content: bytes) -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def post(files: FileServer, path: str, body: bytes, library: str = "raw") -> requests.Response:
    return requests.post(
        f"{files.server.url}{path}",
        data=body,
        headers={
            "Authorization": f"Bearer {files.token(library)}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
        timeout=30,
    )


def test_unsafe_ids_and_names_are_refused_over_http(files: FileServer) -> None:
    for file_id in ["%2E%2E", "a%2Fb", "a%5Cb", "a%00b", "x" * 256]:
        response = post(files, f"/sync/files/{file_id}", multipart("a.txt", b"x"))
        assert response.status_code == 400, (file_id, response.text)
        assert response.json()["code"] == 4000
    for name in ["..", "../x", "/etc/passwd", "a/b", "a\\\\b", "é" * 200]:
        response = post(files, "/sync/files/ok", multipart(name, b"x"))
        assert response.status_code == 400, (name, response.text)
    assert files.stored() == []


def test_an_upload_over_the_limit_is_413_and_leaves_nothing(files: FileServer) -> None:
    response = post(files, "/sync/files/big", multipart("big.bin", b"\0" * (MAX_FILE_BYTES + 1)))
    assert response.status_code == 413
    assert response.json()["code"] == 4130
    assert files.info("raw", "big").status_code == 404
    assert files.stored() == []


def test_a_client_vanishing_mid_upload_leaves_no_metadata_and_no_partial_file(
    files: FileServer,
) -> None:
    """The connection drops after 1 MiB of a declared 3 MiB body: the server must discard
    what it received and record nothing."""
    body = multipart("partial.bin", os.urandom(3 * 1024 * 1024))
    head = (
        f"POST /sync/files/partial HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{files.server.port}\r\n"
        f"Authorization: Bearer {files.token('raw')}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", files.server.port), timeout=10) as sock:
        sock.sendall(head + body[: 1024 * 1024])
        # wait until the server has started writing the upload, then vanish
        wait_until(lambda: files.stored(), 10, message="the upload never started")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    wait_until(
        lambda: files.stored() == [],
        TIMEOUT,
        message=lambda: f"a partial upload was left behind: {files.stored()}",
    )
    assert files.info("raw", "partial").status_code == 404
    # and the server still works
    assert post(files, "/sync/files/after", multipart("a.txt", b"x")).status_code == 200
