"""Streams the file part of a ``multipart/form-data`` upload without buffering it.

Werkzeug's form parser spools whole files to temporary files before the view sees them; here
the decoder runs as the storage reads, so the bytes go straight from the socket to the
storage's own temporary file, and the size limit stops the upload as soon as it is crossed.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Event, File, MultipartDecoder, NeedData

from ..errors import ErrorCode, VerdantError, bad_request
from .backend import ReadableStream
from .names import media_type

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_CHUNK = 64 * 1024
_MAX_BUFFERED = 1024 * 1024  # part headers and fields before the file; bounds the decoder
_MAX_PARTS = 16


class UploadPart(io.RawIOBase):
    """The bytes of the first file part of a multipart body, decoded as they are read.

    Reading raises ``VerdantError`` (413) once more than ``limit`` bytes arrived and (400)
    when the body is malformed or ends early, which makes the storage discard the upload.
    """

    def __init__(self, decoder: MultipartDecoder, body: ReadableStream, limit: int) -> None:
        super().__init__()
        self._decoder = decoder
        self._body = body
        self._limit = limit
        self._size = 0
        self._pending = memoryview(b"")
        self._finished = False
        part = self._find_file_part()
        self.filename = part.filename
        self.content_type = media_type(part.headers.get("content-type"))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._pending:
            if self._finished:
                return 0
            event = self._next_event()
            if not isinstance(event, Data):
                raise bad_request("The file part ended unexpectedly")
            self._size += len(event.data)
            if self._size > self._limit:
                raise VerdantError(
                    ErrorCode.TOO_LARGE, f"The file is larger than {self._limit} bytes"
                )
            self._pending = memoryview(event.data)
            self._finished = not event.more_data
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._pending))
        target[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _find_file_part(self) -> File:
        while True:
            event = self._next_event()
            if isinstance(event, File):
                return event
            if isinstance(event, Epilogue):
                raise bad_request("The upload has no file part")
            # preamble, plain fields and their data are not ours to keep

    def _next_event(self) -> Event:
        try:
            while isinstance(event := self._decoder.next_event(), NeedData):
                self._decoder.receive_data(self._body.read(_CHUNK) or None)
        except ValueError as exc:  # malformed multipart, or the body ended early
            raise bad_request(f"The upload is not valid multipart/form-data: {exc}") from exc
        except ClientDisconnected as exc:
            raise bad_request("The client disconnected during the upload") from exc
        except RequestEntityTooLarge as exc:  # headers, fields or the request body too large
            raise VerdantError(ErrorCode.TOO_LARGE, "The upload is too large") from exc
        return event


def open_upload(body: ReadableStream, content_type: str | None, limit: int) -> UploadPart:
    """Start decoding ``body``; returns once the file part's headers have been read."""
    mimetype, options = parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        raise bad_request("A file upload must be multipart/form-data with a boundary")
    try:
        encoded = boundary.encode("ascii")
    except UnicodeEncodeError as exc:
        raise bad_request("The multipart boundary must be ASCII") from exc
    decoder = MultipartDecoder(encoded, max_form_memory_size=_MAX_BUFFERED, max_parts=_MAX_PARTS)
    return UploadPart(decoder, body, limit)
