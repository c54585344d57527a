"""When a library's global ack may go out: only once the value has stood for a moment.

A store client stamps an edit, and may then store and acknowledge other replicas' newer
operations before its edit is sent. A global ack computed in that moment passes the edit, and a
client that folds its history up to it drops the edit when it arrives, as older than its
baseline (docs/protocol.md, "The global ack"). So a computed value waits ``delay`` before it is
published: by then the edits stamped before the acknowledgements it rests on have arrived.

Two values wait at most, the oldest first. A newer candidate replaces the second, so under a
steady stream of acknowledgements a value is still published at least every ``delay``, at most
``2 * delay`` after it was computed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """A computed global ack and when it was computed (ms)."""

    timestamp: str
    since_ms: int


@dataclass(frozen=True)
class GlobalAck:
    """A library's published global ack (only ever raised) and the values waiting to be."""

    published: str | None
    waiting: tuple[Waiting, ...] = ()


def advance(state: GlobalAck, computed: str | None, now_ms: int, delay_ms: int) -> GlobalAck:
    """The state after computing ``computed`` at ``now_ms``: what may be published now."""
    state = _release(state, now_ms, delay_ms)
    newest = state.waiting[-1].timestamp if state.waiting else state.published
    if computed is not None and (newest is None or computed > newest):
        kept = state.waiting[:1]
        state = GlobalAck(state.published, (*kept, Waiting(computed, now_ms)))
        state = _release(state, now_ms, delay_ms)
    return state


def _release(state: GlobalAck, now_ms: int, delay_ms: int) -> GlobalAck:
    """Publish the newest waiting value that has stood for ``delay_ms``."""
    published = state.published
    waiting = list(state.waiting)
    while waiting and now_ms - waiting[0].since_ms >= delay_ms:
        published = waiting.pop(0).timestamp
    return GlobalAck(published, tuple(waiting))
