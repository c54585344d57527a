"""File uploads, lookups and the deletion lifecycle; the views only translate HTTP.

Lifecycle (docs/protocol.md, "Files" and "Differences from the official server"): an upload's
metadata is written only after its bytes are durably stored; compaction marks files whose refs
disappeared as pending deletion (``Transaction.mark_files_unreferenced``) and unmarks them when
a ref comes back; the sweep deletes files pending for longer than the grace period, whatever
the library's presence.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import secrets
import time
from typing import Any

from flask import url_for

from ..background import BackgroundLoop
from ..errors import ErrorCode, VerdantError, bad_request
from ..storage import Database
from ..tokens import TokenInfo
from .backend import FileStorage, ReadableStream, StaleUploadCleaner
from .names import is_safe_segment
from .records import FileInfo
from .upload import open_upload

logger = logging.getLogger("flask_verdant")

_SWEEP_BATCH = 100
# An upload still without metadata this long after it began was cut short by a crash.
_ABANDONED_UPLOAD_SECONDS = 3600.0
# Disk full, file too large for the file system, quota exceeded.
_STORAGE_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file's bytes


class FileService:
    """One app's file endpoints: storage, metadata and the periodic sweep."""

    def __init__(
        self,
        database: Database,
        storage: FileStorage | None,
        *,
        max_bytes: int,
        delete_after_seconds: float,
        sweep_interval_seconds: float,
    ) -> None:
        if storage is not None and not isinstance(storage, FileStorage):
            raise TypeError("file_storage must implement put/get_url/delete/open (see FileStorage)")
        self.database = database
        self.storage = storage
        self.max_bytes = max_bytes
        self.delete_after_seconds = delete_after_seconds
        self.sweeper = BackgroundLoop(
            self._sweep_step, sweep_interval_seconds if storage else 0, name="verdant-file-sweep"
        )

    def require_storage(self) -> FileStorage:
        if self.storage is None:
            raise VerdantError(
                ErrorCode.NO_FILE_STORAGE, "This server has no file storage configured"
            )
        return self.storage

    def upload(
        self,
        sender: TokenInfo,
        file_id: str,
        body: ReadableStream,
        content_type: str | None,
        content_length: int | None,
    ) -> FileInfo:
        """Store the upload's file part, then record it, replacing (and deleting) any previous
        upload of the same file id. Everything is checked before the body is read."""
        storage = self.require_storage()
        if not sender.type.can_write:
            raise VerdantError(ErrorCode.FORBIDDEN, "Read-only replicas cannot upload files")
        check_file_id(file_id)
        if content_length is not None and content_length > self.max_bytes + _MULTIPART_SLACK:
            raise VerdantError(
                ErrorCode.TOO_LARGE, f"The file is larger than {self.max_bytes} bytes"
            )
        part = open_upload(body, content_type, self.max_bytes)
        if not is_safe_segment(part.filename):
            raise bad_request(f"Unsafe file name {part.filename!r}")
        info = FileInfo(
            library_id=sender.library_id,
            file_id=file_id,
            upload_id=secrets.token_hex(16),
            name=part.filename,
            type=part.content_type,
        )
        # Recorded first: if the process dies after the bytes are in place but before the
        # metadata is written, the sweep finds them through this row.
        with self.database.write() as tx:
            tx.begin_upload(info, self._now_ms())
        try:
            size = storage.put(part, info)
        except ValueError as exc:
            self._end_upload(info)
            raise bad_request(str(exc)) from exc
        except BaseException as exc:
            # put removes what it wrote; deleting again covers a failure after the rename.
            if self._delete_bytes(info):
                self._end_upload(info)
            if isinstance(exc, OSError) and exc.errno in _STORAGE_FULL:
                raise VerdantError(
                    ErrorCode.UNAVAILABLE, "The file storage is full; try again later"
                ) from exc
            raise
        stored = dataclasses.replace(info, size=size, uploaded_at_ms=self._now_ms())
        try:
            with self.database.write() as tx:
                previous = tx.put_file(stored)
                tx.end_upload(stored.upload_id)
            self.database.wait_durable()
        except BaseException:
            # If even this fails, the upload's row stays and the sweep deletes the bytes.
            if self._delete_bytes(stored):
                self._end_upload(stored)
            raise
        if previous is not None:
            self._delete_bytes(previous)
        return stored

    def get(self, sender: TokenInfo, file_id: str) -> FileInfo:
        self.require_storage()
        check_file_id(file_id)
        with self.database.read() as tx:
            info = tx.get_file(sender.library_id, file_id)
            readable = tx.may_read_file(sender.library_id, file_id, sender.user_id)
        if info is None or not readable:
            # a file of another user's private document does not exist for this one
            raise VerdantError(ErrorCode.NOT_FOUND, f"No file {file_id!r} in this library")
        return info

    def find_upload(self, file_id: str, upload_id: str, name: str) -> FileInfo:
        """The upload a download URL names; the random upload id is what authorizes it."""
        self.require_storage()
        with self.database.read() as tx:
            info = tx.get_file_by_upload(upload_id)
        if info is None or info.file_id != file_id or info.name != name:
            raise VerdantError(ErrorCode.NOT_FOUND, "No such file")
        return info

    def describe(self, library_id: str, file_id: str) -> dict[str, Any] | None:
        """A file ref for the host app (document snapshots): ``{id, url, name, type}``."""
        if self.storage is None:
            return None
        with self.database.read() as tx:
            info = tx.get_file(library_id, file_id)
        if info is None:
            return None
        return {
            "id": info.file_id,
            "url": self.download_url(info),
            "name": info.name,
            "type": info.type,
        }

    def download_url(self, info: FileInfo) -> str | None:
        """The storage's own URL, else the blueprint's; None when no URL can be built (outside
        a request, without ``SERVER_NAME``)."""
        url = self.require_storage().get_url(info)
        if url is not None:
            return url
        try:
            return url_for(
                "verdant.file_data",
                file_id=info.file_id,
                upload_id=info.upload_id,
                name=info.name,
                _external=True,
            )
        except RuntimeError:
            return None

    def sweep(self) -> int:
        """Delete the files pending deletion for longer than the grace period; returns how many.

        Each row is claimed (deleted only if it is still pending and still that upload) before
        its bytes go, so a concurrent re-upload or a ref coming back wins over the sweep.
        """
        storage = self.storage
        if isinstance(storage, StaleUploadCleaner):
            storage.remove_stale_uploads()
        self._sweep_abandoned_uploads()
        due = self._now_ms() - int(self.delete_after_seconds * 1000)
        deleted = 0
        while True:
            with self.database.read() as tx:
                batch = tx.files_pending_deletion(due, _SWEEP_BATCH)
            deleted_before = deleted
            for info in batch:
                with self.database.write() as tx:
                    claimed = tx.claim_file_deletion(info, due)
                if claimed and self._delete_bytes(info, restore_on_failure=True):
                    deleted += 1
            # a full batch that deleted nothing is failing storage: retry at the next sweep
            if len(batch) < _SWEEP_BATCH or deleted == deleted_before:
                break
        if deleted:
            logger.info("File sweep deleted %d files", deleted)
        return deleted

    def _sweep_abandoned_uploads(self) -> None:
        """Delete the bytes of uploads whose process died before their metadata was written."""
        started_before = self._now_ms() - int(_ABANDONED_UPLOAD_SECONDS * 1000)
        with self.database.read() as tx:
            abandoned = tx.abandoned_uploads(started_before, _SWEEP_BATCH)
        for info in abandoned:
            if self._delete_bytes(info):
                self._end_upload(info)
        if abandoned:
            logger.warning("File sweep found %d abandoned uploads", len(abandoned))

    def _end_upload(self, info: FileInfo) -> None:
        try:
            with self.database.write() as tx:
                tx.end_upload(info.upload_id)
        except Exception:  # the sweep retries: the row only means "check these bytes"
            logger.exception("Could not record the end of upload %s", info.upload_id)

    def evict(self, library_id: str) -> int:
        """Delete every file of the library, bytes and metadata."""
        with self.database.write() as tx:
            files = tx.delete_library_files(library_id)
        for info in files:
            self._delete_bytes(info)
        return len(files)

    def close(self) -> None:
        self.sweeper.stop()

    def _sweep_step(self) -> bool:
        self.sweep()
        return True

    def _delete_bytes(self, info: FileInfo, *, restore_on_failure: bool = False) -> bool:
        if self.storage is None:
            return True
        try:
            self.storage.delete(info)
        except Exception:
            logger.exception(
                "Could not delete file %s of library %s", info.file_id, info.library_id
            )
            if restore_on_failure:  # keep it pending, so the next sweep retries
                with self.database.write() as tx:
                    tx.restore_file(info)
            return False
        return True

    def _now_ms(self) -> int:
        return int(time.time() * 1000)


def check_file_id(file_id: str) -> None:
    if not is_safe_segment(file_id):
        raise bad_request(f"Unsafe file id {file_id!r}")
