"""Rate limiting and retry backoff: pure arithmetic over times that the caller passes in.

The node rate-limits each remote peer *before* any signature check (Ed25519 verify is
the main receive cost, ~80 µs), and a peer that keeps exceeding its budget is
graylisted for a while, so a flood costs us a dictionary lookup per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokenBucket", "PeerLimiter", "AuthorCeiling", "backoff_ms"]


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked. Times in milliseconds."""

    rate: float
    burst: float
    tokens: float
    updated: int

    @classmethod
    def full(cls, *, rate: float, burst: float, now: int) -> TokenBucket:
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def take(self, now: int, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; return whether it was allowed."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate / 1000)
            self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class PeerLimiter:
    """One token bucket per peer, plus a graylist for peers that keep flooding.

    A peer refused ``strikes`` times within a window is graylisted for ``graylist_ms``:
    every frame from it is refused without touching its bucket. Memory is bounded by
    ``max_peers`` (the least recently seen peers are forgotten first).
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        strikes: int = 100,
        graylist_ms: int = 60_000,
        max_peers: int = 10_000,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._strikes = strikes
        self._graylist_ms = graylist_ms
        self._max_peers = max_peers
        self._buckets: dict[str, TokenBucket] = {}
        self._refusals: dict[str, int] = {}
        self._graylisted_until: dict[str, int] = {}
        self.refused = 0

    def allow(self, peer: str, now: int, cost: float = 1.0) -> bool:
        until = self._graylisted_until.get(peer)
        if until is not None:
            if now < until:
                self.refused += 1
                return False
            del self._graylisted_until[peer]
            self._refusals.pop(peer, None)
        bucket = self._buckets.pop(peer, None)
        if bucket is None:
            bucket = TokenBucket.full(rate=self._rate, burst=self._burst, now=now)
            if len(self._buckets) >= self._max_peers:
                del self._buckets[next(iter(self._buckets))]
        self._buckets[peer] = bucket  # re-insert: dict order is least recently seen first
        if bucket.take(now, cost):
            return True
        self.refused += 1
        strikes = self._refusals.get(peer, 0) + 1
        if strikes >= self._strikes:
            self._graylisted_until[peer] = now + self._graylist_ms
            strikes = 0
        self._refusals[peer] = strikes
        return False

    def is_graylisted(self, peer: str, now: int) -> bool:
        until = self._graylisted_until.get(peer)
        return until is not None and now < until


class AuthorCeiling:
    """How many events each author may have accepted: ``rate`` per second, ``burst`` banked.

    Unlike :class:`PeerLimiter` it grants part of a request (a prefix of a run) and
    refunds what a later check refused, so a forged run naming an author cannot spend
    that author's budget. Memory is bounded by ``max_authors`` (least recently seen
    forgotten first, which only ever gives an author a fresh, full budget).

    ``behind_ms`` is also its notion of *recent*: an event authored less than that before
    now is live traffic, charged whichever way it comes (gossip or sync); older ones are
    history, which a sync fetches at the sync limits alone.
    """

    def __init__(
        self, *, rate: float, burst: float, max_authors: int = 10_000, behind_ms: int = 600_000
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("an author ceiling needs a positive rate and burst")
        self._rate = rate
        self._burst = burst
        self._max = max_authors
        self._behind_ms = behind_ms
        self._buckets: dict[bytes, TokenBucket] = {}
        #: When each author was last refused part of what they asked for.
        self._behind: dict[bytes, int] = {}

    def grant(self, author: bytes, now: int, wanted: int) -> int:
        """Spend up to ``wanted`` whole tokens of ``author``; return how many were granted."""
        bucket = self._buckets.pop(author, None)
        if bucket is None:
            bucket = TokenBucket.full(rate=self._rate, burst=self._burst, now=now)
            if len(self._buckets) >= self._max:
                oldest = next(iter(self._buckets))
                del self._buckets[oldest]
                self._behind.pop(oldest, None)
        self._buckets[author] = bucket
        bucket.take(now, 0)  # refill
        granted = max(0, min(wanted, int(bucket.tokens)))
        bucket.tokens -= granted
        if granted < wanted:
            self._behind[author] = now
        return granted

    def refund(self, author: bytes, count: int) -> None:
        bucket = self._buckets.get(author)
        if bucket is not None:
            bucket.tokens = min(self._burst, bucket.tokens + count)

    def is_behind(self, author: bytes, now: int) -> bool:
        """Whether some of ``author``'s events were deferred in the last ``behind_ms``."""
        since = self._behind.get(author)
        return since is not None and now - since < self._behind_ms

    @property
    def window_ms(self) -> int:
        """How long an author stays "behind", and how old an event may be to be recent."""
        return self._behind_ms

    def is_recent(self, ts: int, now: int) -> bool:
        """Whether an event authored at ``ts`` (the author's clock) is live traffic."""
        return now - ts < self._behind_ms


def backoff_ms(attempts: int, *, initial: int, maximum: int, jitter: float) -> int:
    """Delay before retry number ``attempts`` (1-based): ``initial * 2**(attempts-1)``,
    capped at ``maximum``, scaled by ``jitter`` (a factor the caller draws, e.g. 0.8-1.2)."""
    if attempts < 1:
        raise ValueError("attempts is 1-based")
    base = min(maximum, initial * (1 << min(attempts - 1, 32)))
    return max(1, int(base * jitter))
