"""A websocket's writer thread exists only while there is something to write (memory per idle
connection, BENCHMARKS.md), and never loses or reorders a message across its restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from flask_verdant import websocket_transport
from flask_verdant.websocket_transport import LightThread, SocketConnection


class FakeSocket:
    def sendall(self, data: bytes) -> None: ...

    def shutdown(self, how: int) -> None: ...


class FakeWebSocket:
    def __init__(self) -> None:
        self.sock = FakeSocket()
        self.sent: list[str] = []

    def send(self, payload: str) -> None:
        self.sent.append(payload)


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_the_writer_ends_when_idle_and_a_later_send_restarts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(websocket_transport, "_WRITER_LINGER_SECONDS", 0.05)
    ws = FakeWebSocket()
    connection = SocketConnection(ws, queue_size=100, stall_timeout=1.0)
    for n in range(50):
        connection.send(str(n))
    wait_for(lambda: not connection._writing)
    connection.send("50")
    wait_for(lambda: not connection._writing)
    assert ws.sent == [str(n) for n in range(51)]


def test_sends_racing_the_writers_exit_are_all_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websocket_transport, "_WRITER_LINGER_SECONDS", 0.001)
    ws = FakeWebSocket()
    connection = SocketConnection(ws, queue_size=10_000, stall_timeout=1.0)
    for n in range(300):
        connection.send(str(n))
        if n % 7 == 0:
            time.sleep(0.002)
    wait_for(lambda: len(ws.sent) == 300)
    assert ws.sent == [str(n) for n in range(300)]


def test_light_thread_runs_its_target() -> None:
    ran = threading.Event()
    LightThread(target=ran.set).start()
    assert ran.wait(2)
