"""Slowing down clients that are refused again and again, with memory bounded in entries.

Two views of the same refusals: a repeat of the same key (an expired token, a refused frame
of one user) is slowed at once, because store 3.x clients retry a refused token or frame in a
loop with no delay (docs/protocol.md, "Tokens"); and each client address has a refusal budget,
so that new tokens, or HTTP instead of websockets, do not get round it. A refusal beyond
either waits ``delay`` seconds before it is answered (a parked greenlet under gevent): about
one attempt a second for a looping client. Valid requests are never slowed, so users who
share an address with a misbehaving client are not punished for it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections import OrderedDict


class RefusalThrottle:
    """Says whether the same key was refused within ``window`` seconds."""

    def __init__(self, delay: float = 1.0, window: float = 10.0, size: int = 4096) -> None:
        self.delay = delay
        self._window = window
        self._size = size
        self._lock = threading.Lock()
        self._last: OrderedDict[str, float] = OrderedDict()

    def refused(self, key: str) -> bool:
        """Record a refusal; say whether the same key (a token, a user) was refused recently."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            previous = self._last.pop(digest, None)
            self._last[digest] = now
            while len(self._last) > self._size:
                self._last.popitem(last=False)
        return previous is not None and now - previous < self._window


class AddressBudget:
    """A token bucket of refusals per client address: ``burst`` at once, ``per_second`` after.

    At most ``size`` addresses are tracked (least recently refused dropped first), some 200
    bytes each. IPv6 addresses count per /64, the block one subscriber usually holds, so that
    walking through one's own addresses gains nothing.
    """

    def __init__(self, burst: float = 10.0, per_second: float = 1.0, size: int = 4096) -> None:
        self._burst = burst
        self._rate = per_second
        self._size = size
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def refused(self, address: str | None) -> bool:
        """Record a refusal from ``address``; say whether it is over its budget."""
        key = address_key(address)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            over = tokens < 1.0
            self._buckets[key] = (tokens if over else tokens - 1.0, now)
            while len(self._buckets) > self._size:
                self._buckets.popitem(last=False)
        return over


def address_key(address: str | None) -> str:
    """The address a budget is kept for: IPv4 as is, IPv6 by its /64 network."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)
