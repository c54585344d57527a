"""Replies and broadcasts leave a library in commit order, though each waits for its fsync.

A message's outcome may be delivered only once its commit is on disk, and that wait happens
outside the library's lock so that the commits of other messages can share the same fsync
(group commit). A turn, taken under the library's lock right after the commit, puts the
deliveries back in commit order: a peer never sees a newer global ack before an older one.
"""

from __future__ import annotations

import threading
from types import TracebackType


class DeliveryOrder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[str, _Line] = {}

    def take(self, library_id: str) -> Turn:
        """The next turn of a library; call under its lock, then use it as a context manager."""
        with self._lock:
            line = self._lines.get(library_id)
            if line is None:
                line = self._lines[library_id] = _Line()
            number = line.issued
            line.issued += 1
        return Turn(self, library_id, line, number)

    def _done(self, library_id: str, line: _Line) -> None:
        with self._lock, line.condition:
            line.served += 1
            line.condition.notify_all()
            if line.served == line.issued and self._lines.get(library_id) is line:
                del self._lines[library_id]

    def __len__(self) -> int:
        return len(self._lines)


class _Line:
    __slots__ = ("condition", "issued", "served")

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.issued = 0
        self.served = 0


class Turn:
    """Entering waits for the library's earlier turns to finish; leaving lets the next one go."""

    def __init__(self, order: DeliveryOrder, library_id: str, line: _Line, number: int) -> None:
        self._order = order
        self._library_id = library_id
        self._line = line
        self._number = number

    def __enter__(self) -> None:
        line = self._line
        with line.condition:
            while line.served != self._number:
                line.condition.wait()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._order._done(self._library_id, self._line)
