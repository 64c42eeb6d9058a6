"""Peer penalties: invalid gossip or stream frames cost the peer that sent them.

py-libp2p 0.8.1's gossipsub v1.1 scoring is not usable for this: its validators return
only accept/reject, rejections do not reach the score (``invalid_message_deliveries`` is
never incremented by our validators), and no graylist refuses a peer's dials. So we keep
our own: each penalty adds to a peer's score, which decays by half every
``half_life`` seconds; a peer whose score reaches ``threshold`` is *graylisted* for
``duration`` seconds: disconnected, its inbound streams refused and never redialled
(the dialer asks :meth:`Graylist.blocked`). Penalties are counted by reason.

The tables are bounded (``max_peers``; the lowest scores are forgotten first), so nothing
a stream of new peer ids sends can grow them.
"""

from __future__ import annotations

from p2pchat.protocol.counters import ReasonCounter

__all__ = ["Graylist"]


class Graylist:
    """Scores and graylisted peers; the clock (seconds) is passed in."""

    def __init__(
        self,
        *,
        threshold: float = 10.0,
        half_life: float = 60.0,
        duration: float = 600.0,
        max_peers: int = 4096,
    ) -> None:
        self._threshold = threshold
        self._half_life = half_life
        self._duration = duration
        self._max_peers = max_peers
        self._scores: dict[str, tuple[float, float]] = {}  # peer -> (score, at)
        self._until: dict[str, float] = {}
        self.penalties = ReasonCounter()
        self.graylisted_total = 0

    def score(self, peer_id: str, now: float) -> float:
        score, at = self._scores.get(peer_id, (0.0, now))
        return float(score * 0.5 ** ((now - at) / self._half_life))

    def penalize(self, peer_id: str, reason: str, now: float, weight: float = 1.0) -> bool:
        """Count a penalty; True when it just put the peer on the graylist."""
        self.penalties.add(reason)
        score = self.score(peer_id, now) + weight
        self._scores[peer_id] = (score, now)
        if len(self._scores) > self._max_peers:
            lowest = min(self._scores, key=lambda p: self.score(p, now))
            del self._scores[lowest]
        if score < self._threshold or self.blocked(peer_id, now):
            return False
        self._until[peer_id] = now + self._duration
        self.graylisted_total += 1
        if len(self._until) > self._max_peers:
            del self._until[min(self._until, key=self._until.__getitem__)]
        return True

    def blocked(self, peer_id: str, now: float) -> bool:
        until = self._until.get(peer_id)
        if until is None:
            return False
        if now >= until:
            del self._until[peer_id]
            self._scores.pop(peer_id, None)
            return False
        return True

    def statistics(self, now: float) -> dict[str, object]:
        live = [p for p in list(self._until) if self.blocked(p, now)]
        return {
            "penalties": self.penalties.snapshot(),
            "graylisted": len(live),
            "graylisted_total": self.graylisted_total,
        }
