"""What the server knows about one stored file: the row of the ``files`` table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileInfo:
    """One upload of a file, identified per library by the client's file id.

    ``upload_id`` is random per upload and part of the storage location, so a re-upload
    never overwrites bytes that a concurrent sweep or download may be using, and a stored
    location's bytes never change (which makes them safe to cache forever).
    """

    library_id: str
    file_id: str
    upload_id: str
    name: str
    type: str
    size: int = 0
    uploaded_at_ms: int = 0
    pending_delete_at_ms: int | None = None
