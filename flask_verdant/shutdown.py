"""Going away gracefully: when the worker is told to stop, websockets close with 1001 at once.

gunicorn stops a worker on SIGTERM (and SIGINT, SIGQUIT) by letting its open requests finish,
up to ``--graceful-timeout``; a websocket never finishes by itself, so its client would only
learn of the restart when the worker kills it. Here the first websocket of a process adds a
step in front of the worker's own handlers for those signals: every socket of every sync
server in the process is closed with 1001 (going away), so clients reconnect at once, to
another worker or to the restarted one, while the worker finishes what is in flight. A worker
that stops by itself (``--max-requests``) ends its sockets when its graceful timeout runs out;
they close with 1001 then (``websocket_transport``).

Only handlers that are Python callables are wrapped (gunicorn's, or the interpreter's SIGINT
handler), and only from the process's main thread, where gevent's greenlets run (signals cannot
be set from other threads): under ``flask run``'s threads nothing is installed.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

logger = logging.getLogger("flask_verdant")

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class Closable(Protocol):
    def going_away(self) -> None: ...


_servers: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_installed_in: int | None = None
_stopping_in: int | None = None


def watch(server: Closable) -> None:
    """Close ``server``'s sockets when this process is told to stop; cheap to call again."""
    global _installed_in
    with _lock:
        _servers.add(server)
        if _installed_in == os.getpid():
            return
        _installed_in = os.getpid()
        for signum in _SIGNALS:
            previous = signal.getsignal(signum)
            if callable(previous):
                try:
                    signal.signal(signum, _chained(previous))
                except ValueError:
                    return  # not the main thread of the process (flask run's threads)


def _chained(previous: Callable[[int, FrameType | None], Any]) -> Callable[..., None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        # A signal handler must not wait (under gevent it may run in the event loop, where
        # blocking is an error; ``threading.Thread.start`` waits for the thread to start): the
        # closing runs in a bare thread (a greenlet under gevent) and the worker's own handler
        # runs now.
        _thread.start_new_thread(_going_away, ())
        previous(signum, frame)

    return handler


def stopping() -> bool:
    """Whether this process was told to stop: a socket opened now is closed at once (1001).

    Until the worker closes its listening socket (about a second later under gunicorn), its
    clients, reconnecting with no delay, would otherwise land on it again and stay there.
    """
    return _stopping_in == os.getpid()


def _going_away() -> None:
    global _stopping_in
    _stopping_in = os.getpid()
    for server in list(_servers):
        try:
            server.going_away()
        except Exception:
            logger.exception("Closing websockets at shutdown failed")
