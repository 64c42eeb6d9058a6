"""Shared test fixtures: deterministic randomness and time, hypothesis profiles."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.netns import NetnsWorld, require_netns

# CI machines are small and shared: never fail a property test on wall-clock time.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


class DeterministicRng:
    """``rng(n) -> bytes`` from a seed: SHA-256 in counter mode. Reproducible, not secret."""

    def __init__(self, seed: bytes | str | int = 0) -> None:
        self._seed = str(seed).encode() if not isinstance(seed, bytes) else seed
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return out[:n]


@pytest.fixture
def rng() -> DeterministicRng:
    return DeterministicRng(b"p2pchat-tests")


#: A fixed "now" for tests: 2026-01-01T00:00:00Z in milliseconds.
NOW_MS = 1_767_225_600_000


@pytest.fixture
def now() -> int:
    return NOW_MS


@pytest.fixture
def netns_world() -> Iterator[NetnsWorld]:
    """A fresh world of network namespaces (tests/netns), torn down after the test.

    Skips with the reason when not root; fails loudly when root but namespaces are unusable.
    """
    require_netns()
    with NetnsWorld() as world:
        yield world
