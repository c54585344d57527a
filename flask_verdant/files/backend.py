"""The interface between the file endpoints and wherever the bytes live."""

from __future__ import annotations

from typing import BinaryIO, Protocol, runtime_checkable

from .records import FileInfo


class ReadableStream(Protocol):
    """A binary stream read in chunks; ``read`` returns ``b""`` at the end."""

    def read(self, size: int = -1, /) -> bytes: ...


@runtime_checkable
class FileStorage(Protocol):
    """Stores uploaded bytes. The server writes metadata only after ``put`` returns.

    ``put`` must store the stream durably and atomically: when it returns, the bytes survive
    a crash, and when it raises (the client disconnected, the upload is too large, the disk
    is full) nothing of the upload may remain. It returns the number of bytes stored, and
    raises ``ValueError`` for an ``info`` it cannot store (answered 400). Reading the stream
    can raise; ``put`` must let that exception through after cleaning up.

    ``get_url`` returns the absolute URL clients download from, or ``None`` to have the
    blueprint serve the bytes itself from ``open``. ``delete`` must succeed when the bytes
    are already gone, because a sweep and an eviction can both reach the same file.
    """

    def put(self, stream: ReadableStream, info: FileInfo) -> int: ...

    def get_url(self, info: FileInfo) -> str | None: ...

    def delete(self, info: FileInfo) -> None: ...

    def open(self, info: FileInfo) -> BinaryIO: ...


@runtime_checkable
class StaleUploadCleaner(Protocol):
    """Optional: a storage whose interrupted uploads can outlive a crashed process."""

    def remove_stale_uploads(self) -> int: ...
