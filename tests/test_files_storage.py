"""``LocalFileStorage`` and the path rules, without an app."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from flask_verdant import FileInfo, FileStorage, LocalFileStorage
from flask_verdant.files.names import is_safe_segment, library_directory, media_type


def info(name: str = "a.txt", library_id: str = "lib", file_id: str = "f1") -> FileInfo:
    return FileInfo(library_id, file_id, "0123abcd", name, "text/plain")


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_it_implements_the_protocol(tmp_path: Path) -> None:
    assert isinstance(LocalFileStorage(tmp_path), FileStorage)


def test_put_open_delete(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path / "root")
    assert storage.put(io.BytesIO(b"hello"), info()) == 5
    with storage.open(info()) as stream:
        assert stream.read() == b"hello"
    assert tree(tmp_path / "root") == ["lib/f1/0123abcd/a.txt"]
    # readable by a static file server running as another user (``host``)
    assert storage.path(info()).stat().st_mode & 0o777 == 0o644
    storage.delete(info())
    storage.delete(info())  # already gone: still fine
    # empty directories go too, the root and its temporary directory stay
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == [".uploads"]


def test_delete_keeps_other_uploads_of_the_library(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path)
    storage.put(io.BytesIO(b"1"), info(file_id="f1"))
    storage.put(io.BytesIO(b"2"), info(file_id="f2"))
    storage.delete(info(file_id="f1"))
    assert tree(tmp_path) == ["lib/f2/0123abcd/a.txt"]


def test_a_failing_stream_leaves_nothing_behind(tmp_path: Path) -> None:
    class Broken:
        calls = 0

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 3:
                raise ConnectionResetError("client went away")
            return b"x" * 1000

    storage = LocalFileStorage(tmp_path)
    with pytest.raises(ConnectionResetError):
        storage.put(Broken(), info())
    assert tree(tmp_path) == []


def test_a_replaced_file_is_swapped_atomically(tmp_path: Path) -> None:
    """Readers see the old or the new bytes, never a mix: the new file is renamed over."""
    storage = LocalFileStorage(tmp_path)
    storage.put(io.BytesIO(b"old"), info())
    reader = storage.open(info())
    storage.put(io.BytesIO(b"new"), info())
    assert reader.read() == b"old"
    reader.close()
    with storage.open(info()) as stream:
        assert stream.read() == b"new"


def test_get_url(tmp_path: Path) -> None:
    assert LocalFileStorage(tmp_path).get_url(info()) is None
    storage = LocalFileStorage(tmp_path, host="https://cdn.example.com/files/")
    url = storage.get_url(info(name="a b#?.txt", library_id="x/y"))
    assert url == "https://cdn.example.com/files/x%252Fy/f1/0123abcd/a%20b%23%3F.txt"


@pytest.mark.parametrize(
    "unsafe",
    [
        info(name=".."),
        info(name="../x"),
        info(name="/etc/passwd"),
        info(name="a\0b"),
        info(file_id=".."),
        info(file_id="a/b"),
        info(name="x" * 256),
    ],
)
def test_unsafe_paths_are_refused(tmp_path: Path, unsafe: FileInfo) -> None:
    storage = LocalFileStorage(tmp_path)
    with pytest.raises(ValueError):
        storage.put(io.BytesIO(b"x"), unsafe)
    with pytest.raises(ValueError):
        storage.open(unsafe)
    assert tree(tmp_path) == []


def test_library_directories_are_safe_and_distinct() -> None:
    ids = ["..", ".", "a.b", "a%2Eb", "a/b", "a%2Fb", ".uploads", "ü", "x\0y"]
    directories = [library_directory(library_id) for library_id in ids]
    assert len(set(directories)) == len(ids)
    for directory in directories:
        assert is_safe_segment(directory)
        assert not directory.startswith(".")
    with pytest.raises(ValueError):
        library_directory("x" * 200 + "/" * 30)


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("photo.png", True),
        ("ünïcode name (1).jpg", True),
        (".hidden", True),
        ("", False),
        (".", False),
        ("..", False),
        ("a/b", False),
        ("a\\b", False),
        ("a\0b", False),
        ("a\nb", False),
        ("a\x7fb", False),
        ("é" * 127, True),
        ("é" * 128, False),
        ("\udc80", False),
    ],
)
def test_safe_segments(value: str, safe: bool) -> None:
    assert is_safe_segment(value) is safe


@pytest.mark.parametrize(
    ("declared", "stored"),
    [
        ("image/png", "image/png"),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
        ('text/plain; name="a b"', 'text/plain; name="a b"'),
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("not a type", "application/octet-stream"),
        ("text/html\r\nSet-Cookie: x=1", "application/octet-stream"),
        ("image/" + "x" * 300, "application/octet-stream"),
    ],
)
def test_media_types(declared: str | None, stored: str) -> None:
    assert media_type(declared) == stored


def test_stale_uploads(tmp_path: Path) -> None:
    storage = LocalFileStorage(tmp_path, stale_upload_seconds=10)
    assert storage.remove_stale_uploads() == 0  # nothing uploaded yet
    uploads = tmp_path / ".uploads"
    uploads.mkdir()
    (uploads / "old").write_bytes(b"x")
    (uploads / "new").write_bytes(b"x")
    os.utime(uploads / "old", (1, 1))
    assert storage.remove_stale_uploads() == 1
    assert [p.name for p in uploads.iterdir()] == ["new"]
