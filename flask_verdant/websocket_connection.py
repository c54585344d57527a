"""One websocket over a raw socket, on wsproto's frame protocol: reading, writing, pings, close.

The read loop runs in the thread (greenlet under gevent) of the request that upgraded, so a
frame goes from the socket to the handler with no hand-off. Sending never blocks the sender:
a frame goes out at once when the socket can take it whole; otherwise what is left waits in
a backlog, and a writer (a reused thread, ``threadreuse``) exists only while there is one.

Memory is bounded in bytes: a socket whose unwritten bytes would pass ``queue_bytes`` is cut
off (one frame may exceed it when nothing else waits), and a writer that cannot hand its
bytes to the kernel within ``stall_seconds`` cuts the socket off too. Its client reconnects
and catches up through ``sync``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

from .threadreuse import ThreadReuse

logger = logging.getLogger("flask_verdant")

_WRITERS = ThreadReuse()
_RECEIVE_BYTES = 65536

#: What a frame handler answers: None to go on, or the close code and reason.
Refusal = tuple[int, str] | None


class SocketConnection:
    """The hub's view of one websocket: ``send`` never blocks, ``close`` says goodbye."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_message_bytes: int,
        ping_seconds: float,
        queue_bytes: int,
        queue_size: int,
        stall_seconds: float,
    ) -> None:
        self._sock = sock
        self._protocol = Connection(ConnectionType.SERVER)
        self._max_message_bytes = max_message_bytes
        self._ping_seconds = ping_seconds or None
        self._queue_bytes = queue_bytes
        self._queue_size = max(1, queue_size)
        self._stall_seconds = stall_seconds
        # ``_lock`` guards the protocol state and the backlog; ``_writing`` is held by whoever
        # writes to the socket, so frames never interleave and leave in the order queued.
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._backlog: deque[bytes] = deque()
        self._unwritten = 0  # bytes queued or being written by the writer
        self._writer = False
        self._closed = False
        self._tls = isinstance(sock, ssl.SSLSocket)

    @property
    def unwritten_bytes(self) -> int:
        """Bytes accepted for this socket that the kernel has not taken yet."""
        return self._unwritten

    # sending, from any thread

    def send(self, payload: str) -> None:
        self._send(Message(data=payload))

    def close(self, code: int = CloseReason.GOING_AWAY, reason: str = "") -> None:
        """Say goodbye with ``code`` and stop sending; what is still queued is dropped.

        The read loop then waits for the client's answer (or the end of the connection).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._backlog.clear()
            self._unwritten = 0
            state = self._protocol.state
            data = b""
            if state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                # A close frame's reason is at most 123 bytes.
                reason = reason.encode()[:123].decode(errors="ignore")
                data = self._protocol.send(CloseConnection(code=code, reason=reason))
        self._write_goodbye(data)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def _write_goodbye(self, data: bytes) -> None:
        """Write a close frame if the socket is free and takes it now; a goodbye is best effort."""
        if data and self._writing.acquire(blocking=False):
            try:
                self._write_now(data)
            except OSError:
                pass
            finally:
                self._writing.release()

    def abort(self) -> None:
        """Cut the socket off at once; the read loop sees the end and cleans up."""
        with self._lock:
            self._closed = True
            self._backlog.clear()
            self._unwritten = 0
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _send(self, event: Event) -> None:
        with self._lock:
            if self._closed:
                return
            data = self._protocol.send(event)
            direct = not self._backlog and self._writing.acquire(blocking=False)
            if not direct:
                overflow = self._queue(data)
                start = not overflow and not self._writer
                self._writer = self._writer or start
        if direct:
            self._send_direct(data)
        elif overflow:
            logger.warning(
                "Cut off a websocket whose client stopped reading (%d bytes waiting)",
                self._unwritten + len(data),
            )
            self.abort()
        elif start:
            _WRITERS.run(self._drain)

    def _queue(self, data: bytes) -> bool:
        """Add to the backlog under ``_lock``; True if that would pass the budget."""
        if self._unwritten and (
            self._unwritten + len(data) > self._queue_bytes
            or len(self._backlog) >= self._queue_size
        ):
            return True
        self._backlog.append(data)
        self._unwritten += len(data)
        return False

    def _send_direct(self, data: bytes) -> None:
        """Write what the socket takes now (holding ``_writing``); queue the rest."""
        try:
            sent = self._write_now(data)
        except OSError:
            self._writing.release()
            self.abort()
            return
        start = False
        with self._lock:
            if sent < len(data) and not self._closed:
                rest = data[sent:]
                self._backlog.appendleft(rest)
                self._unwritten += len(rest)
            start = bool(self._backlog) and not self._writer and not self._closed
            self._writer = self._writer or start
            self._writing.release()
        if start:
            _WRITERS.run(self._drain)

    def _write_now(self, data: bytes) -> int:
        """Write without waiting: as much of ``data`` as the socket's buffer takes now.

        No ``select`` (it fails for descriptors above 1023, and a busy worker has more), and no
        ``socket.send`` on a descriptor in non-blocking mode: gevent's would wait when the
        buffer is full. Such a descriptor (gevent's, or one with a timeout) takes a plain
        ``os.write``; a blocking one a ``send`` with ``MSG_DONTWAIT``. A TLS socket must
        encrypt, so everything it sends goes through the writer.
        """
        if self._tls:
            return 0
        try:
            fd = self._sock.fileno()
            if not os.get_blocking(fd):
                return os.write(fd, data)
            return self._sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0

    def _drain(self) -> None:
        """The writer: empty the backlog, then let go (an idle socket holds no thread)."""
        while True:
            if not self._writing.acquire(timeout=self._stall_seconds):
                self.abort()
                return
            try:
                with self._lock:
                    if self._closed or not self._backlog:
                        self._writer = False
                        return
                    chunk = b"".join(self._backlog)
                    self._backlog.clear()
                try:
                    self._sock.sendall(chunk)
                except OSError:
                    # A timeout too: the client took nothing for ``stall_seconds``.
                    self.abort()
                    return
                except Exception:
                    # Never a silent socket: its client would stay connected and miss everything.
                    logger.exception("A websocket writer failed; closing the socket")
                    self.abort()
                    return
                with self._lock:
                    self._unwritten = max(0, self._unwritten - len(chunk))
            finally:
                self._writing.release()

    # reading, in the handler's own thread

    def serve(self, handle: Callable[[str | bytes], Refusal]) -> None:
        """Read frames and hand each message to ``handle`` until the connection ends.

        A refusal closes with its code; so does a message over the size limit (1009) and what
        wsproto cannot parse (1002, 1007). After a close the loop waits for the client's answer
        or the end of the connection, at most one ping interval. A silent client is pinged
        every ``ping_seconds`` and dropped when it has not answered by the next one.
        """
        self._sock.settimeout(self._ping_seconds)
        parts: list[str | bytes] = []
        size = 0
        pinged = False
        while True:
            try:
                data = self._sock.recv(_RECEIVE_BYTES)
            except TimeoutError:
                if pinged or self._closed:
                    self.abort()
                    return
                self._send(Ping())
                pinged = True
                continue
            except OSError:
                return
            if not data:
                return
            pinged = False
            with self._lock:
                if self._protocol.state is ConnectionState.CLOSED:
                    continue  # only the end of the connection is left to wait for
                self._protocol.receive_data(data)
                events = list(self._protocol.events())
            for event in events:
                if isinstance(event, CloseConnection):
                    if self._answer_close(event):
                        return
                elif isinstance(event, Ping):
                    self._send(event.response())
                elif isinstance(event, (TextMessage, BytesMessage)) and not self._closed:
                    size += _byte_length(event.data)
                    if size > self._max_message_bytes:
                        logger.warning(
                            "Closed a websocket: a message over %d bytes",
                            self._max_message_bytes,
                        )
                        self.close(CloseReason.MESSAGE_TOO_BIG, "Message too large")
                        continue
                    data_part = event.data
                    parts.append(data_part if isinstance(data_part, str) else bytes(data_part))
                    if event.message_finished:
                        message = _join(parts)
                        parts, size = [], 0
                        refusal = handle(message)
                        if refusal is not None:
                            self.close(*refusal)

    def _answer_close(self, event: CloseConnection) -> bool:
        """Handle a close event; True when nothing more is to be read."""
        with self._lock:
            state = self._protocol.state
        if state is ConnectionState.OPEN:
            # wsproto could not parse the client's bytes: close with its code (1002, 1007).
            self.close(event.code, event.reason or "")
            return False
        if state is ConnectionState.REMOTE_CLOSING:
            # The client said goodbye first: answer in kind.
            with self._lock:
                data = b"" if self._closed else self._protocol.send(event.response())
                self._closed = True
                self._backlog.clear()
                self._unwritten = 0
            self._write_goodbye(data)
        return True


def _byte_length(data: str | bytes | bytearray) -> int:
    if isinstance(data, str):
        return len(data) if data.isascii() else len(data.encode())
    return len(data)


def _join(parts: list[str | bytes]) -> str | bytes:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], str):
        return "".join(part for part in parts if isinstance(part, str))
    return b"".join(part for part in parts if isinstance(part, bytes))
