"""The replay cache of initial messages: remember, refuse, prune, pickle, fail closed."""

from __future__ import annotations

import pytest

from p2pchat_crypto import cbor
from p2pchat_crypto.errors import PickleError, ReplayError
from p2pchat_crypto.replay import ReplayCache

EK1, EK2 = b"\x01" * 32, b"\x02" * 32


def test_a_pair_is_accepted_once() -> None:
    cache = ReplayCache()
    cache.check(EK1, 1)
    cache.add(EK1, 1, expires=100)
    with pytest.raises(ReplayError):
        cache.check(EK1, 1)
    with pytest.raises(ReplayError):
        cache.add(EK1, 1, expires=100)
    cache.add(EK1, 2, expires=100)  # same ephemeral, other prekey: another pair
    cache.add(EK2, 1, expires=100)
    assert len(cache) == 3
    assert (EK1, 1) in cache


def test_prune_forgets_only_expired_entries() -> None:
    cache = ReplayCache()
    cache.add(EK1, 1, expires=100)
    cache.add(EK2, 1, expires=200)
    assert cache.prune(now=99) == 0
    assert cache.prune(now=100) == 1
    assert (EK1, 1) not in cache
    assert (EK2, 1) in cache


def test_a_full_cache_fails_closed() -> None:
    cache = ReplayCache(max_entries=2)
    cache.add(EK1, 1, expires=100)
    cache.add(EK1, 2, expires=100)
    with pytest.raises(ReplayError, match="full"):
        cache.add(EK2, 1, expires=100)
    cache.prune(now=100)
    cache.add(EK2, 1, expires=200)


def test_pickle_round_trips() -> None:
    cache = ReplayCache(max_entries=5)
    cache.add(EK1, 1, expires=100)
    cache.add(EK2, 9, expires=300)
    restored = ReplayCache.from_bytes(cache.to_bytes())
    assert restored.to_bytes() == cache.to_bytes()
    with pytest.raises(ReplayError):
        restored.check(EK2, 9)
    assert "max_entries=5" in repr(restored)


@pytest.mark.parametrize(
    "body",
    [
        [0, []],
        [5, [[b"\x01" * 31, 1, 100]]],
        [5, [[b"\x01" * 32, True, 100]]],
        [5, [[b"\x01" * 32, 1]]],
        [5],
    ],
)
def test_bad_pickles_are_refused(body: list[object]) -> None:
    with pytest.raises(PickleError):
        ReplayCache.from_bytes(cbor.encode(["p2pchat/replay-cache", 1, body]))
    with pytest.raises(PickleError):
        ReplayCache.from_bytes(cbor.encode(["p2pchat/replay-cache", 2, [5, []]]))
