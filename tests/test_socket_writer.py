"""A websocket writes frames at once when the socket takes them, has a writer thread only for a
backlog (memory per idle connection, BENCHMARKS.md), loses and reorders nothing, and cuts off a
client that stops reading once its unwritten bytes pass the budget."""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from flask_verdant.threadreuse import ThreadReuse
from flask_verdant.websocket_connection import SocketConnection


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.002)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def small_buffers(*socks: socket.socket) -> None:
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)


def connection(sock: socket.socket, queue_bytes: int = 1 << 30) -> SocketConnection:
    return SocketConnection(
        sock,
        max_message_bytes=1 << 20,
        ping_seconds=0,
        queue_bytes=queue_bytes,
        queue_size=1 << 20,
        stall_seconds=5.0,
    )


class Reader:
    """The client's side: every text message, in order, until the server closes."""

    def __init__(self, sock: socket.socket) -> None:
        self.messages: list[str] = []
        self.close_code: int | None = None
        self._sock = sock
        self._protocol = Connection(ConnectionType.CLIENT)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        part = ""
        while True:
            data = self._sock.recv(65536)
            if not data:
                return
            self._protocol.receive_data(data)
            for event in self._protocol.events():
                if isinstance(event, TextMessage):
                    part += event.data
                    if event.message_finished:
                        self.messages.append(part)
                        part = ""
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code
                    return


def test_frames_go_out_at_once_and_no_writer_is_left(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    ws = connection(server)
    reader = Reader(client)
    for n in range(50):
        ws.send(str(n))
        assert ws.unwritten_bytes == 0  # small frames: the socket took each one whole
    wait_for(lambda: len(reader.messages) == 50)
    assert reader.messages == [str(n) for n in range(50)]
    ws.close(1001)
    wait_for(lambda: reader.close_code == 1001)


def test_sends_from_many_threads_to_a_slow_reader_arrive_whole_and_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    small_buffers(server, client)
    ws = connection(server)

    def sender(name: str) -> None:
        for n in range(200):
            ws.send(f"{name}{n}:" + "x" * 500)  # far more than the socket buffers hold

    threads = [threading.Thread(target=sender, args=(name,)) for name in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reader = Reader(client)
    wait_for(lambda: len(reader.messages) == 600)
    for name in "abc":
        mine = [m.split(":")[0] for m in reader.messages if m[0] == name]
        assert mine == [f"{name}{n}" for n in range(200)]
    wait_for(lambda: ws.unwritten_bytes == 0)


def test_a_client_that_stops_reading_is_cut_off_within_the_byte_budget(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    small_buffers(server, client)
    budget = 100_000
    ws = connection(server, queue_bytes=budget)
    frame = "y" * 10_000
    most = 0
    for _ in range(1000):
        ws.send(frame)
        most = max(most, ws.unwritten_bytes)
    assert most <= budget
    client.settimeout(5)
    received = 0
    while chunk := client.recv(65536):  # what the kernel held, then the end
        received += len(chunk)
    assert received < 30 * len(frame)


def test_one_frame_larger_than_the_budget_still_goes_out_when_nothing_waits(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    ws = connection(server, queue_bytes=1000)
    reader = Reader(client)
    ws.send("z" * 50_000)
    wait_for(lambda: reader.messages == ["z" * 50_000])


def test_reused_threads_run_every_job_and_park_for_the_next() -> None:
    reuse = ThreadReuse(max_parked=2, park_seconds=5.0)
    threads: list[int] = []
    done = threading.Semaphore(0)

    def job() -> None:
        threads.append(threading.get_ident())
        done.release()

    for _ in range(20):
        reuse.run(job)
        assert done.acquire(timeout=5)
        wait_for(lambda: len(reuse._parked) == 1)
    assert len(set(threads)) == 1


def test_parked_threads_end_after_their_time() -> None:
    reuse = ThreadReuse(max_parked=4, park_seconds=0.05)
    ran = threading.Event()
    reuse.run(ran.set)
    assert ran.wait(5)
    wait_for(lambda: len(reuse._parked) == 1)
    wait_for(lambda: len(reuse._parked) == 0)


def test_sockets_above_descriptor_1023_write_too() -> None:
    """A busy worker holds more than 1024 descriptors; ``select`` could not watch these."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200 <= hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        server, client = socket.socketpair()
        assert server.fileno() > 1023
        ws = connection(server)
        reader = Reader(client)
        ws.send("far up")
        wait_for(lambda: reader.messages == ["far up"])
        server.close()
        client.close()
    finally:
        for fd in padding:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
