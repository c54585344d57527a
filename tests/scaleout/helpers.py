"""Helpers for the scale-out tests: real clients placed on chosen workers, what each client
received on the wire, and raw sync requests (HTTP and websocket upgrade) with a valid token."""

from __future__ import annotations

import base64
import json
import math
import os
import socket
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import requests

from flask_verdant import TokenProvider
from flask_verdant.testing import HybridClock
from tests.interop.conftest import TOKEN_SECRET
from tests.interop.driver import Client, NodeDriver, wait_until
from tests.interop.test_realtime_mode import make_doc as make_doc  # the same documents

from .cluster import Cluster

Doc = dict[str, Any]
CONVERGE_TIMEOUT = 30.0


def open_on(
    cluster: Cluster, pid: int | None, driver: NodeDriver, name: str, library: str
) -> Client:
    """A realtime client of user ``name`` whose websocket worker ``pid`` accepted (any if None).

    Its token comes from ``cluster``'s auth route; with several hosts its ``url`` claim may send
    the client to another host."""

    def open_client() -> Client:
        client = driver.open_client(
            name,
            auth_url=cluster.auth_url(library, name),
            user=name,
            library=library,
            transport="realtime",
            presence={"cursor": name},
        )
        client.wait_online(sync_responses=1, timeout=30)
        return client

    if pid is None:
        return open_client()
    with cluster.only(pid):
        return open_client()


class _Pacer:
    """Whether a costly check may run now: at most once a second (the first time at once)."""

    def __init__(self) -> None:
        self._last = -math.inf

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < 1.0:
            return False
        self._last = now
        return True


def wait_converged(clients: list[Client], timeout: float = CONVERGE_TIMEOUT) -> list[Doc]:
    """Wait until every client holds the same documents; return them.

    What counts is what each client stored, not what its entity views show: a store client
    can skip an update to an open document when another was just garbage-collected
    (docs/protocol.md, "Known client defects"). So when the views differ, the documents each
    client stored are compared (``Client.read_stored``, at most once a second).
    """
    stored_check = _Pacer()

    def converged() -> list[Doc] | None:
        states = [c.read() for c in clients]
        if all(s == states[0] for s in states):
            return states[0]
        if not stored_check.due():
            return None
        stored = [c.read_stored() for c in clients]
        return stored[0] if all(s == stored[0] for s in stored) else None

    def describe() -> str:
        """How each client's view and stored documents differ from the first client's."""
        lines = []
        first: dict[str, Doc] | None = None
        for client in clients:
            view = {d["id"]: d for d in client.read()}
            stored = {d["id"]: d for d in client.read_stored()}
            first = stored if first is None else first
            differ = [(key, first[key], stored[key]) for key in first.keys() & stored.keys()]
            lines.append(
                f"{client.name} {client.status()}: {len(stored)} stored, {len(view)} in view; "
                f"not stored {sorted(first.keys() - stored.keys())}; "
                f"stored only here {sorted(stored.keys() - first.keys())}; "
                f"not in view {sorted(stored.keys() - view.keys())}; "
                f"stored differently {json.dumps([d for d in differ if d[1] != d[2]])[:1500]}"
            )
        return "\n".join(lines)

    result: list[Doc] = wait_until(
        converged, timeout, message=lambda: "replicas did not converge\n" + describe()
    )
    return result


def wait_all_hold(clients: list[Client], ids: set[str], timeout: float = CONVERGE_TIMEOUT) -> None:
    """Wait until every client has stored (at least) the documents ``ids``.

    A client's view can miss documents it stored (``wait_converged``): for a client whose view
    lacks some, its stored documents are read, at most once a second."""
    stored_check = _Pacer()

    def missing(stored: bool) -> dict[str, list[str]]:
        lacking = {c.name: ids - {d["id"] for d in c.read()} for c in clients}
        if stored:
            for client in clients:
                if lacking[client.name]:
                    lacking[client.name] -= {d["id"] for d in client.read_stored()}
        return {name: sorted(doc_ids) for name, doc_ids in lacking.items() if doc_ids}

    def held() -> bool:
        if not missing(stored=False):
            return True
        return stored_check.due() and not missing(stored=True)

    wait_until(held, timeout, message=lambda: f"not stored by: {missing(stored=True)}")


def last_seq(driver: NodeDriver) -> int:
    """The sequence number of the driver's latest wire-trace entry (a mark to read after)."""
    entries = driver.trace(limit=1)
    return int(entries[-1]["seq"]) if entries else 0


def received(client: Client, after: int = 0) -> list[dict[str, Any]]:
    """Every message ``client`` received over websockets after trace entry ``after``."""
    messages: list[dict[str, Any]] = []
    for entry in client.trace(limit=4000):
        if entry["seq"] > after and entry.get("kind") == "ws-in":
            messages.extend(m for m in entry.get("response") or [] if isinstance(m, dict))
    return messages


def sent_operations(client: Client) -> set[tuple[str, str]]:
    """(oid, timestamp) of every operation ``client`` sent over websockets."""
    sent: set[tuple[str, str]] = set()
    for entry in client.trace(limit=4000):
        if entry.get("kind") != "ws-out":
            continue
        for message in entry.get("request") or []:
            if isinstance(message, dict) and message.get("type") in ("op", "sync"):
                sent.update((op["oid"], op["timestamp"]) for op in message.get("operations") or [])
    return sent


def operations_received(client: Client) -> Counter[tuple[str, str]]:
    """How often each operation reached ``client`` (live ``op-re`` and ``sync-resp``)."""
    counts: Counter[tuple[str, str]] = Counter()
    for message in received(client):
        if message.get("type") in ("op-re", "sync-resp"):
            counts.update((op["oid"], op["timestamp"]) for op in message.get("operations") or [])
    return counts


def socket_closes(client: Client, after: int) -> int:
    """How many of ``client``'s websockets closed after trace entry ``after``."""
    entries = client.trace(limit=300)
    return sum(1 for entry in entries if entry["seq"] > after and entry["kind"] == "ws-close")


# -- raw requests with a valid token -------------------------------------------------------------
def token_for(library: str, user: str, sync_url: str) -> str:
    return TokenProvider(TOKEN_SECRET).get_token(
        library_id=library, user_id=user, sync_endpoint=sync_url
    )


def sync_body(replica_id: str, doc_oid: str) -> dict[str, Any]:
    """A ``sync`` message that creates one document (so a stored write would show)."""
    clock = HybridClock()
    operation = {
        "oid": doc_oid,
        "timestamp": clock.now(),
        "data": {"op": "initialize", "value": {"id": doc_oid.split("/", 1)[1], "title": "x"}},
    }
    return {
        "messages": [
            {
                "type": "sync",
                "replicaId": replica_id,
                "timestamp": clock.now(),
                "schemaVersion": 1,
                "operations": [operation],
                "baselines": [],
                "since": None,
                "resyncAll": True,
            }
        ]
    }


def post_sync(sync_url: str, token: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        sync_url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def upgrade(sync_url: str, token: str, timeout: float = 10.0) -> tuple[int, Any]:
    """Ask for a websocket on ``sync_url``; return the status and, unless 101, the JSON body."""
    parts = urlsplit(sync_url)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: Bearer, {token}\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
        sock.sendall(request.encode())
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status == 101:
            return status, None
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        while len(body) < length and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        try:
            return status, json.loads(body[:length] or b"null")
        except ValueError:
            return status, body.decode(errors="replace")
