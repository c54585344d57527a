"""A client that stops reading is cut off in bounded time, holding a bounded number of bytes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest
import websocket
from flask import Flask

from flask_verdant.testing import VerdantTestClient

from .realtime_helpers import Closed, Socket, serving, sync_server, wait_for

BUDGET = 2_000_000


def test_a_client_that_sends_syncs_and_never_reads_is_cut_off_within_its_budget(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app({"VERDANT_WEBSOCKET_QUEUE_BYTES": BUDGET})
    writer = VerdantTestClient(app, library_id="lib", user_id="writer")
    writer.sync()
    blob = "b" * 50_000
    for n in range(20):  # a library of about 1 MB: every sync answer carries all of it
        writer.op(writer.operation(f"items/{n}:x", {"op": "set", "name": "v", "value": blob}))
    with serving(app) as address:
        hub = sync_server(app).hub
        greedy = VerdantTestClient(app, library_id="lib", user_id="greedy")
        s = Socket(address, greedy.token, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        wait_for(lambda: len(hub.members("lib")) == 1)
        (member,) = hub.members("lib")
        connection = member.connection
        most = 0
        stop = threading.Event()

        def watch() -> None:
            nonlocal most
            while not stop.is_set():
                most = max(most, connection.unwritten_bytes)  # type: ignore[attr-defined]
                time.sleep(0.001)

        watcher = threading.Thread(target=watch)
        watcher.start()
        started = time.monotonic()
        try:
            for _ in range(500):
                if not hub.members("lib"):
                    break
                try:
                    s.send(greedy.sync_message())
                except (OSError, websocket.WebSocketException):
                    break
            wait_for(lambda: not hub.members("lib"), timeout=20)
            elapsed = time.monotonic() - started
            # What the client can still read is what the kernel held, then the end.
            answers = 0
            with pytest.raises((OSError, websocket.WebSocketException, Closed)):
                while True:
                    s.receive(timeout=5)
                    answers += 1
        finally:
            stop.set()
            watcher.join()
            s.close()
        assert answers < 20
        # One sync answer is about 1 MB: the budget plus at most one answer was ever waiting.
        assert most <= BUDGET + 1_100_000, most
        assert elapsed < 20
