"""The app's two secrets, made once per instance and kept in its instance folder.

A starter must not run on secrets that are written in its source: anyone could forge a session
cookie or a sync token with them. So unless ``FLASK_SECRET_KEY`` / ``FLASK_VERDANT_TOKEN_SECRET``
are set, the first start writes random ones to ``<instance>/secrets.json`` (readable by the
owner only) and every later start, and every worker, reads the same file. Deleting it signs
everyone out and invalidates every sync token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

KEYS = ("SECRET_KEY", "VERDANT_TOKEN_SECRET")


def load_or_create(instance_path: str) -> dict[str, str]:
    path = Path(instance_path) / "secrets.json"
    if not path.exists():
        _create(path)
    values: dict[str, str] = json.loads(path.read_text())
    if not all(isinstance(values.get(key), str) and len(values[key]) >= 32 for key in KEYS):
        raise RuntimeError(f"{path} is damaged: delete it to make new secrets")
    return values


def _create(path: Path) -> None:
    """Write the file whole or not at all; if workers race, the first link wins for all."""
    draft = path.with_name(f".secrets.{os.getpid()}.tmp")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump({key: secrets.token_urlsafe(48) for key in KEYS}, file)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
