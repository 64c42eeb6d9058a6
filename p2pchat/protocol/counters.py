"""Counters keyed by a reason slug: why messages were refused (and, later, why peers were
penalised), so an implementer whose messages are dropped can see which rule refused them.

Reasons are the stable slugs of ``protocol-spec/`` (``bad-signature``, ``not-member``…).
The set of keys is bounded: a reason beyond :data:`MAX_REASONS` distinct ones is counted
under ``"other"``, so nothing a peer sends can grow the table.
"""

from __future__ import annotations

from collections import Counter

from p2pchat.errors import P2PChatError, RateLimitedError

__all__ = ["MAX_REASONS", "OTHER", "RATE_LIMITED", "ReasonCounter", "reason_of"]

#: Distinct reasons kept before the rest is folded into :data:`OTHER`.
MAX_REASONS = 64
OTHER = "other"
#: The reason recorded for a rate-limit refusal (``RateLimitedError`` has no slug).
RATE_LIMITED = "rate-limited"


def reason_of(exc: BaseException) -> str:
    """The stable slug of a refusal: ``exc.reason`` for ``WireError``/``GroupError``,
    :data:`RATE_LIMITED` for rate limiting, else the lower-case class name."""
    if isinstance(exc, RateLimitedError):
        return RATE_LIMITED
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    if isinstance(exc, P2PChatError):
        return type(exc).__name__.lower()
    return OTHER


class ReasonCounter:
    """How many times each reason occurred (bounded number of distinct reasons)."""

    __slots__ = ("_counts", "_max")

    def __init__(self, *, max_reasons: int = MAX_REASONS) -> None:
        self._counts: Counter[str] = Counter()
        self._max = max_reasons

    def __repr__(self) -> str:
        return f"ReasonCounter({dict(self._counts)!r})"

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, reason: str, count: int = 1) -> None:
        if reason not in self._counts and len(self._counts) >= self._max:
            reason = OTHER
        self._counts[reason] += count

    def add_error(self, exc: BaseException) -> str:
        """Count ``exc`` under :func:`reason_of` it; return that reason."""
        reason = reason_of(exc)
        self.add(reason)
        return reason

    def get(self, reason: str) -> int:
        return self._counts.get(reason, 0)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def snapshot(self) -> dict[str, int]:
        """A copy, most frequent first (ties by reason)."""
        return dict(sorted(self._counts.items(), key=lambda item: (-item[1], item[0])))
