"""A websocket has a writer thread only while it has something to write (memory per idle
connection, BENCHMARKS.md); writers are reused threads, and no message is lost or reordered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask_verdant.threadreuse import ThreadReuse
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
        time.sleep(0.0001)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.002)


def test_a_socket_lets_its_writer_go_when_done_and_gets_one_again() -> None:
    ws = FakeWebSocket()
    connection = SocketConnection(ws, queue_size=100, stall_timeout=1.0)
    for n in range(50):
        connection.send(str(n))
    wait_for(lambda: not connection._writing)
    connection.send("50")
    wait_for(lambda: len(ws.sent) == 51 and not connection._writing)
    assert ws.sent == [str(n) for n in range(51)]


def test_sends_from_many_threads_racing_the_writer_are_all_written_in_order() -> None:
    ws = FakeWebSocket()
    connection = SocketConnection(ws, queue_size=10_000, stall_timeout=1.0)

    def sender(name: str) -> None:
        for n in range(200):
            connection.send(f"{name}{n}")
            if n % 7 == 0:
                time.sleep(0.001)

    threads = [threading.Thread(target=sender, args=(name,)) for name in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: len(ws.sent) == 600)
    for name in "abc":
        assert [p for p in ws.sent if p[0] == name] == [f"{name}{n}" for n in range(200)]


def test_a_full_queue_cuts_the_socket_off() -> None:
    ws = FakeWebSocket()
    connection = SocketConnection(ws, queue_size=1, stall_timeout=1.0)
    connection._writing = True  # as if a writer were stuck on a socket that stopped reading
    connection.send("a")
    connection.send("b")
    assert connection._closing


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


def test_light_thread_runs_its_target() -> None:
    ran = threading.Event()
    LightThread(target=ran.set).start()
    assert ran.wait(5)
