"""Which ids and names may become path segments, and how library ids become directories.

File ids and file names come from clients and end up as directory and file names, so they
must never be able to leave the storage root. Library ids come from tokens the host app
signs; they may hold any character, so they are encoded rather than refused.
"""

from __future__ import annotations

import re
from urllib.parse import quote

MAX_SEGMENT_BYTES = 255
"""The usual file name limit (NAME_MAX) of Linux and macOS file systems."""

DEFAULT_TYPE = "application/octet-stream"

_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(
    rf'^{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=({_TOKEN}|"[^"\\\x00-\x1f\x7f]*"))*$'
)


def is_safe_segment(value: str) -> bool:
    """One relative path component: no separators, NUL, control characters, dots-only or
    overlong names."""
    if value in ("", ".", "..") or _FORBIDDEN.search(value):
        return False
    try:
        return len(value.encode("utf-8")) <= MAX_SEGMENT_BYTES
    except UnicodeEncodeError:
        return False


def library_directory(library_id: str) -> str:
    """An injective encoding of a library id as one directory name.

    Percent-encoding every character outside ``[A-Za-z0-9_~-]`` removes separators and dots
    (so ``..`` and hidden names cannot occur, and nothing collides with the storage's own
    ``.uploads`` directory); ``%`` itself is encoded too, which keeps the mapping one-to-one.
    """
    directory = quote(library_id, safe="").replace(".", "%2E")
    if not library_id or len(directory) > MAX_SEGMENT_BYTES:
        raise ValueError(f"library id {library_id!r} cannot name a directory")
    return directory


def media_type(value: str | None) -> str:
    """The part's declared type if it is a well-formed media type, else a neutral one: it is
    sent back verbatim as the ``Content-Type`` of downloads."""
    if value and len(value) <= MAX_SEGMENT_BYTES and _MEDIA_TYPE.match(value):
        return value
    return DEFAULT_TYPE
