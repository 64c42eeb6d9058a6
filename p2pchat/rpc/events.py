"""Event log with resumable cursors, and the token bucket of the request rate limit (sans-IO).

The node calls ``server.publish({"type": "dm.received", ...})``; the log numbers each
event with the next cursor (1, 2, 3… for the life of the server) and keeps the last
``capacity`` of them. A subscriber that reconnects with ``after_cursor=N`` gets every
kept event with a cursor above N, then live ones. If events after N were already
evicted, :meth:`EventLog.since` says so (``gap=True``) instead of pretending the
replay is complete. A cursor *ahead* of the log (a client that talked to an earlier
run of the node, whose cursors restarted) is also a gap: we cannot know what it missed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LoggedEvent", "Replay", "EventLog", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    cursor: int
    type: str
    event: Mapping[str, Any]
    body: bytes = b""  # the event's msgpack encoding, done once at publish time


@dataclass(frozen=True, slots=True)
class Replay:
    """What a subscriber resuming after ``after_cursor`` gets from the log."""

    gap: bool
    events: list[LoggedEvent]
    last_cursor: int


class EventLog:
    """A bounded ring of recent events with monotonically increasing cursors."""

    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._ring: deque[LoggedEvent] = deque(maxlen=capacity)
        self._last = 0

    @property
    def last_cursor(self) -> int:
        """The cursor of the newest event ever appended (0 before the first)."""
        return self._last

    @property
    def oldest_cursor(self) -> int:
        """The cursor of the oldest event still kept (``last_cursor + 1`` when empty)."""
        return self._ring[0].cursor if self._ring else self._last + 1

    def append(self, event: Mapping[str, Any], *, body: bytes = b"") -> LoggedEvent:
        kind = event.get("type")
        if not isinstance(kind, str) or not kind:
            raise ValueError("an event is a map with a non-empty string 'type'")
        self._last += 1
        logged = LoggedEvent(self._last, kind, event, body)
        self._ring.append(logged)
        return logged

    def since(self, after_cursor: int | None, types: frozenset[str] | None = None) -> Replay:
        """Kept events after ``after_cursor`` (``None``: only live events from now on)."""
        if after_cursor is None:
            return Replay(False, [], self._last)
        gap = after_cursor > self._last or after_cursor < self.oldest_cursor - 1
        start = 0 if after_cursor > self._last else after_cursor
        events = [e for e in self._ring if e.cursor > start and (types is None or e.type in types)]
        return Replay(gap, events, self._last)

    def __len__(self) -> int:
        return len(self._ring)


class TokenBucket:
    """``rate`` requests per second on average, bursts up to ``burst``; time is passed in."""

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
