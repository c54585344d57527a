"""Running a blocking system call without stalling a gevent worker.

Under gevent's monkey-patching every connection of a worker is a greenlet on one OS thread, so
a call that blocks in C (fsync of a large file) would stop them all; it runs in gevent's thread
pool instead. Without gevent (``flask run``, a thread per request) it runs in place. gevent is
only looked at when it is already loaded, so nothing here imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def offload(function: Callable[..., T], *args: Any) -> T:
    gevent_monkey = sys.modules.get("gevent.monkey")
    if gevent_monkey is not None and gevent_monkey.is_module_patched("socket"):
        hub = sys.modules["gevent.hub"].get_hub()
        result: T = hub.threadpool.apply(function, args)
        return result
    return function(*args)
