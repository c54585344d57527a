"""Two hosts (two gunicorn instances, each with its own sqlite file) that list each other in
``VERDANT_HOSTS``: each library lives on the host rendezvous hashing picks, the token's ``url``
claim sends the real clients there, and a host answers a request for a library it does not own
with 421 and the owner's URL, storing nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from tests.interop.conftest import _free_port
from tests.interop.driver import NodeDriver

from .cluster import Cluster
from .conftest import MakeCluster
from .helpers import make_doc, open_on, post_sync, sync_body, token_for, upgrade, wait_converged

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def database_text(path: Path) -> str:
    """Every row of every table as text, to search for a library id."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return "\n".join(
            repr(row) for table in tables for row in connection.execute(f'SELECT * FROM "{table}"')
        )
    finally:
        connection.close()


def owner_claim(host: Cluster, library: str) -> str:
    """The ``url`` claim of the token ``host``'s auth route hands out for ``library``."""
    response = requests.get(host.auth_url(library, "probe"), timeout=10)
    assert response.status_code == 200, response.text
    claims: dict[str, Any] = jwt.decode(
        response.json()["accessToken"], options={"verify_signature": False}
    )
    return str(claims["url"])


@pytest.fixture
def hosts(make_cluster: MakeCluster, tmp_path: Path) -> tuple[Cluster, Cluster]:
    ports = [_free_port()]
    while len(ports) < 2:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    urls = [f"http://127.0.0.1:{port}/sync" for port in ports]
    started = []
    for name, port, url in zip("ab", ports, urls, strict=True):
        files = tmp_path / f"files-{name}"
        files.mkdir()
        started.append(
            make_cluster(
                1,
                name=name,
                port=port,
                env={
                    "VERDANT_HOSTS": ",".join(urls),
                    "VERDANT_HOST_URL": url,
                    "VERDANT_FILE_ROOT": str(files),
                },
            )
        )
    return started[0], started[1]


def test_each_library_lives_on_its_owner_and_a_misrouted_request_gets_421(
    hosts: tuple[Cluster, Cluster], drivers: dict[str, NodeDriver], tmp_path: Path
) -> None:
    a, b = hosts
    # both hosts agree on every library's owner; find one library owned by each
    owned: dict[str, str] = {}
    for i in range(64):
        library = f"hosted-{i:03d}"
        owner = owner_claim(a, library)
        assert owner == owner_claim(b, library), library
        assert owner in (a.sync_url, b.sync_url), owner
        owned.setdefault(owner, library)
        if len(owned) == 2:
            break
    assert set(owned) == {a.sync_url, b.sync_url}, f"64 libraries all on one host: {owned}"
    library_a, library_b = owned[a.sync_url], owned[b.sync_url]

    # clients of each library get their token from host a; the url claim sends them to the owner
    for library in (library_a, library_b):
        clients = [
            open_on(a, None, drivers[v], f"{library}-{v.replace('.', '')}", library)
            for v in drivers
        ]
        for i, client in enumerate(clients):
            client.put(make_doc(client.name, i))
        final = wait_converged(clients)
        assert len(final) == len(clients)

    text_a, text_b = database_text(a.database_file), database_text(b.database_file)
    assert library_a in text_a and library_b not in text_a
    assert library_b in text_b and library_a not in text_b

    # a request for library_b sent to host a: 421 naming b's sync URL, nothing stored
    token = token_for(library_b, "mallory", a.sync_url)
    response = post_sync(a.sync_url, token, sync_body("misrouted-replica", "items/misrouted"))
    status, upgrade_body = upgrade(a.sync_url, token)
    upload = requests.post(
        f"{a.sync_url}/files/misrouted-file",
        files={"file": ("a.txt", b"misrouted bytes", "text/plain")},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    info = requests.get(
        f"{a.sync_url}/files/misrouted-file",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert (response.status_code, status, upload.status_code, info.status_code) == (
        421,
        421,
        421,
        421,
    )
    for body in (response.json(), upgrade_body, upload.json(), info.json()):
        assert body["code"] == 4210, body
        assert body["url"] == b.sync_url, body
        assert body["message"]
    text = database_text(a.database_file)
    assert library_b not in text and "misrouted" not in text
    assert not any((tmp_path / "files-a").rglob("*.txt"))
    assert b"misrouted bytes" not in b"".join(
        p.read_bytes() for p in (tmp_path / "files-a").rglob("*") if p.is_file()
    )
