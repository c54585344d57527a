"""Which host serves a library, when libraries are spread over several hosts.

Each library lives on exactly one host (sqlite per host). Rendezvous hashing picks it: every
host scores ``sha256(url, library)`` and the highest wins, so all hosts and the token issuer
agree without talking, and adding a host moves only the libraries it now wins (about 1/n).
The token's ``url`` claim sends the client to the owner; a host asked for a library it does not
own refuses with the owner's URL and stores nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .errors import ErrorCode, VerdantError


def owner_of(library_id: str, hosts: Sequence[str]) -> str:
    """The sync URL of the host that owns ``library_id``."""
    return max(
        hosts,
        key=lambda url: hashlib.sha256(
            f"{url}\n{library_id}".encode("utf-8", "surrogatepass")
        ).digest(),
    )


class HostMap:
    def __init__(self, hosts: Sequence[str], host_url: str) -> None:
        self.hosts = tuple(hosts)
        self.host_url = host_url

    def sync_url_for(self, library_id: str) -> str | None:
        """The owner's sync URL, or None when this deployment is one host."""
        return owner_of(library_id, self.hosts) if self.hosts else None

    def check(self, library_id: str) -> None:
        """Refuse a library another host owns (421, naming the right URL)."""
        owner = self.sync_url_for(library_id)
        if owner is not None and owner != self.host_url:
            raise VerdantError(
                ErrorCode.MISDIRECTED,
                f"Library {library_id!r} is served by {owner}, not by this host",
                {"url": owner},
            )
