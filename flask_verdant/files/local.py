"""``LocalFileStorage``: uploads on the local disk, written atomically and durably.

Layout: ``<root>/<library>/<file id>/<upload id>/<name>``, where ``<library>`` is the encoded
library id (see ``names``). Uploads are first written to ``<root>/.uploads/``, on the same
file system, then fsynced and renamed into place, so a reader never sees a partial file.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from ..offload import offload
from .backend import ReadableStream
from .names import is_safe_segment, library_directory
from .records import FileInfo

_CHUNK = 1024 * 1024
_UPLOADS = ".uploads"
_RENAME_ATTEMPTS = 5


class LocalFileStorage:
    """Files under ``root_directory``.

    With ``host=None`` the extension's blueprint serves the bytes itself; with a ``host``
    (e.g. ``"https://files.example.com/verdant"``) download URLs point there, for nginx or a
    CDN serving ``root_directory``. Temporary files untouched for ``stale_upload_seconds``
    belong to uploads whose process died, and the periodic sweep removes them.
    """

    def __init__(
        self,
        root_directory: str | os.PathLike[str],
        host: str | None = None,
        *,
        stale_upload_seconds: float = 3600.0,
    ) -> None:
        self.given_root = Path(root_directory)
        self.root = Path(os.path.abspath(root_directory))
        self.host = host.rstrip("/") if host else None
        self.stale_upload_seconds = stale_upload_seconds

    def under(self, instance_path: str | os.PathLike[str]) -> LocalFileStorage:
        """This storage as an app sees it: a relative root is under the app's instance folder."""
        if self.given_root.is_absolute():
            return self
        return LocalFileStorage(
            Path(instance_path, self.given_root),
            self.host,
            stale_upload_seconds=self.stale_upload_seconds,
        )

    def __repr__(self) -> str:
        return f"LocalFileStorage({str(self.root)!r}, host={self.host!r})"

    def put(self, stream: ReadableStream, info: FileInfo) -> int:
        target = self.path(info)
        uploads = self.root / _UPLOADS
        uploads.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=uploads, prefix="upload-")
        try:
            with os.fdopen(descriptor, "wb") as out:
                os.fchmod(out.fileno(), 0o644)  # not mkstemp's 0600: nginx may serve `host`
                size = 0
                while chunk := stream.read(_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                _fsync(out.fileno())
            self._move_into_place(Path(temporary), target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return size

    def _move_into_place(self, temporary: Path, target: Path) -> None:
        # A concurrent delete() may remove the (empty) parents between mkdir and rename.
        for attempt in range(_RENAME_ATTEMPTS):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(temporary, target)
                break
            except FileNotFoundError:
                if attempt == _RENAME_ATTEMPTS - 1 or not temporary.exists():
                    raise
        # The new directory entries must reach the disk too, not just the file's data.
        for directory in (target.parent, *target.parent.parents):
            _fsync_directory(directory)
            if directory == self.root:
                break

    def get_url(self, info: FileInfo) -> str | None:
        if self.host is None:
            return None
        segments = self.path(info).relative_to(self.root).parts
        return self.host + "/" + "/".join(quote(segment, safe="") for segment in segments)

    def delete(self, info: FileInfo) -> None:
        target = self.path(info)
        target.unlink(missing_ok=True)
        for directory in (target.parent, target.parent.parent, target.parent.parent.parent):
            try:
                directory.rmdir()
            except OSError:  # not empty (other uploads) or already gone
                break

    def open(self, info: FileInfo) -> BinaryIO:
        return self.path(info).open("rb")

    def remove_stale_uploads(self) -> int:
        """Delete temporary files left by uploads whose process was killed."""
        cutoff = time.time() - self.stale_upload_seconds
        removed = 0
        try:
            entries = list(os.scandir(self.root / _UPLOADS))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def path(self, info: FileInfo) -> Path:
        """Where ``info``'s bytes live; raises ``ValueError`` for unsafe ids or names."""
        for segment in (info.file_id, info.upload_id, info.name):
            if not is_safe_segment(segment):
                raise ValueError(f"{segment!r} cannot be part of a stored file's path")
        directory = library_directory(info.library_id)
        return Path(self.root, directory, info.file_id, info.upload_id, info.name)


def _fsync(descriptor: int) -> None:
    """fsync can take seconds for a large file; under gevent it runs in the hub's thread
    pool, so the worker's other connections keep being served meanwhile."""
    offload(os.fsync, descriptor)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
