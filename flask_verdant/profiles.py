"""Trusted user data for presence, loaded by the host app and cached with a bound."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol


class ProfileSource(Protocol):
    def get(self, user_id: str) -> Any: ...


ProfileLoader = Callable[[str], Any] | ProfileSource


class ProfileCache:
    """Least-recently-used cache in front of the host's loader.

    The reference server caches profiles forever; a long-running server with many users would
    grow without limit, so entries beyond ``max_entries`` are dropped oldest first.
    """

    def __init__(self, loader: ProfileLoader | None, max_entries: int = 4096) -> None:
        if loader is None:
            self._load: Callable[[str], Any] = _default_profile
        elif callable(loader):
            self._load = loader
        elif callable(getattr(loader, "get", None)):
            self._load = loader.get
        else:
            raise TypeError("profiles must be a callable user_id -> dict or have .get(user_id)")
        self._max_entries = max_entries
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: str) -> Any:
        with self._lock:
            if user_id in self._entries:
                self._entries.move_to_end(user_id)
                return self._entries[user_id]
        profile = self._load(user_id)
        if profile is None:
            profile = _default_profile(user_id)
        with self._lock:
            self._entries[user_id] = profile
            self._entries.move_to_end(user_id)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return profile

    def forget(self, user_id: str) -> None:
        """The host changed this user's profile: load it again next time."""
        with self._lock:
            self._entries.pop(user_id, None)

    def __len__(self) -> int:
        return len(self._entries)


def _default_profile(user_id: str) -> dict[str, Any]:
    return {"id": user_id}
