"""Timeouts with retries and jitter for network lookups.

Randomness comes from an injected ``random.Random`` so that the simulator and tests are
reproducible; the clock is trio's, so ``MockClock`` drives the backoff in tests.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from p2pchat.errors import NetworkError

from .config import RetryConfig

__all__ = ["RetryCounters", "backoff_delay", "retry"]

T = TypeVar("T")


class RetryCounters:
    """Running totals, so flakiness is measured rather than guessed (see bench/)."""

    __slots__ = ("attempts", "failed_attempts", "gave_up")

    def __init__(self) -> None:
        self.attempts = 0
        self.failed_attempts = 0
        self.gave_up = 0


def backoff_delay(attempt: int, *, policy: RetryConfig, jitter: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in ``[0, min(max, base * 2**attempt)]``.

    Full jitter spreads retries of many nodes that failed together (a relay restart,
    an overloaded DHT server) instead of having them hit the network in lockstep.
    """
    ceiling = min(policy.max_delay, policy.base_delay * (2**attempt))
    return jitter.uniform(0.0, ceiling)


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryConfig,
    jitter: random.Random,
    what: str,
    counters: RetryCounters | None = None,
) -> T:
    """Run ``operation`` until it returns, at most ``policy.attempts`` times.

    Each attempt is bounded by ``policy.attempt_timeout``. Only :class:`NetworkError`
    (and timeouts) are retried: any other error is a bug or a definite answer and
    propagates at once. After the last attempt the last failure is raised as
    :class:`NetworkError` with the original as ``__cause__``.
    """
    last: BaseException | None = None
    for attempt in range(policy.attempts):
        if attempt:
            await trio.sleep(backoff_delay(attempt - 1, policy=policy, jitter=jitter))
        if counters is not None:
            counters.attempts += 1
        try:
            with trio.fail_after(policy.attempt_timeout):
                return await operation()
        except trio.TooSlowError as exc:
            last = exc
        except NetworkError as exc:
            last = exc
        if counters is not None:
            counters.failed_attempts += 1
    if counters is not None:
        counters.gave_up += 1
    raise NetworkError(f"{what} failed after {policy.attempts} attempts") from last
