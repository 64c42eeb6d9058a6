"""Live comments ("danmaku") for watch-together groups: signed, ephemeral, windowed.

A ``live.comment`` uses the event format and signature of the log, but it is *not* a
log entry: it never takes a place in its author's chain, nothing references it, and
sync never carries it. Its ``seq``/``prev`` name the author's next chain position (so a
gossip run of one comment authenticates against the author's head exactly like a live
post), but a later chain event at that position is not a fork. Why: a busy watch party
produces thousands of comments that nobody needs next week; keeping them in the chain
would make every late joiner download them forever. Comments are kept for
``window_ms`` after their timestamp (measured on the receiver's clock), indexed by
media and timeline offset, so a late joiner replaying minutes 10-12 of a video asks for
exactly that slice (:meth:`LiveIndex.query`). The exact signed bytes are kept too, so a
member can hand a late joiner the window's comments for the range it plays
(:meth:`LiveIndex.query_events`, ``live.want``/``live.batch``): the joiner verifies each one
as if it had come by gossip.

Each author device is rate-limited (a token bucket on the receiver's clock) *before*
the signature is checked.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

from .group_events import GroupEvent, LiveComment
from .limits import TokenBucket

__all__ = ["LiveConfig", "LiveEntry", "LiveIndex"]


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """How long comments are kept, and how fast one device may comment."""

    window_ms: int = 6 * 60 * 60 * 1000
    rate_per_s: float = 1.0
    burst: float = 5.0
    max_comments: int = 100_000


@dataclass(frozen=True, slots=True, order=True)
class LiveEntry:
    """One comment as shown on the timeline (ordered by offset, then event id)."""

    offset: int
    event_id: bytes
    account: bytes = field(compare=False)
    ts: int = field(compare=False)
    text: str = field(compare=False)
    color: int | None = field(compare=False)


class LiveIndex:
    """Comments of one group by media hash, sorted by timeline offset; bounded in time
    and in count."""

    def __init__(self, config: LiveConfig) -> None:
        self._config = config
        self._by_media: dict[bytes, list[LiveEntry]] = {}
        self._seen: dict[bytes, tuple[bytes, int]] = {}  # event id -> (media, ts)
        self._data: dict[bytes, bytes] = {}  # event id -> exact signed bytes
        self._buckets: dict[bytes, TokenBucket] = {}
        self._expiry: list[tuple[int, bytes]] = []  # heap of (ts, event id)

    def __len__(self) -> int:
        return len(self._seen)

    def allow(self, device: bytes, *, now: int) -> bool:
        """Rate limit per author device; call before verifying the signature."""
        bucket = self._buckets.get(device)
        if bucket is None:
            bucket = TokenBucket.full(
                rate=self._config.rate_per_s, burst=self._config.burst, now=now
            )
            self._buckets[device] = bucket
        return bucket.take(now)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._seen

    def add(self, event: GroupEvent, body: LiveComment, *, now: int, data: bytes) -> bool:
        """Index an already verified comment (``data``: its exact bytes); ``False`` if
        duplicate, stale or full."""
        self.prune(now=now)
        if event.event_id in self._seen or event.ts + self._config.window_ms <= now:
            return False
        if len(self._seen) >= self._config.max_comments:
            return False
        entry = LiveEntry(
            offset=body.offset,
            event_id=event.event_id,
            account=event.author_account,
            ts=event.ts,
            text=body.text,
            color=body.color,
        )
        bisect.insort(self._by_media.setdefault(body.media.hash, []), entry)
        self._seen[event.event_id] = (body.media.hash, event.ts)
        self._data[event.event_id] = data
        heapq.heappush(self._expiry, (event.ts, event.event_id))
        return True

    def query(self, media: bytes, start: int, end: int, *, now: int) -> list[LiveEntry]:
        """Comments on ``media`` with ``start <= offset < end``, in timeline order."""
        self.prune(now=now)
        entries = self._by_media.get(media, [])
        lo = bisect.bisect_left(entries, LiveEntry(start, b"", b"", 0, "", None))
        hi = bisect.bisect_left(entries, LiveEntry(end, b"", b"", 0, "", None))
        return entries[lo:hi]

    def query_events(
        self, media: bytes, start: int, end: int, *, now: int, limit: int
    ) -> list[bytes]:
        """The exact bytes of the first ``limit`` comments of :meth:`query` (to serve)."""
        return [self._data[e.event_id] for e in self.query(media, start, end, now=now)[:limit]]

    def prune(self, *, now: int) -> None:
        """Forget comments older than the window (by their timestamp)."""
        horizon = now - self._config.window_ms
        touched: set[bytes] = set()
        while self._expiry and self._expiry[0][0] <= horizon:
            _, eid = heapq.heappop(self._expiry)
            media, _ = self._seen.pop(eid)
            del self._data[eid]
            touched.add(media)
        for media in touched:
            kept = [e for e in self._by_media[media] if e.event_id in self._seen]
            if kept:
                self._by_media[media] = kept
            else:
                del self._by_media[media]
